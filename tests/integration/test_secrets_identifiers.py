"""Secrets in identifiers (keys, ids, names, paths, filters) through invoke(), the one function
the fast path and the SDK's tools/call handler both run, on a real Valkey with an append-only
file: every identifier argument of every tool (enumerated from the registry) under each
secrets.policy, with the log as the daemon's processors leave it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from coordinatord.app import App
from coordinatord.context import Peer
from coordinatord.keyspace import ACTIVITY_STREAM, WRITE_RECORD_PREFIX, Namespace
from coordinatord.log_scrub import scrub_event
from coordinatord.scope import ProjectScope
from coordinatord.server.calls import invoke
from coordinatord.settings import BackendSettings, load_settings
from coordinatord.store import RedisStore, Store
from coordinatord.tool_groups import selection
from coordinatord.tools import build_registry
from coordinatord.tools.registry import ToolReply
from tests.secret_checks import aof_bytes, dump_namespace, leaked, secret_parts
from tests.secret_corpus import NEAR_MISSES, SECRETS
from tests.support import ValkeyProcess, fresh_namespace, valkey_server
from tests.tool_calls import content_cases, identifier_cases, specs, with_text

pytestmark = pytest.mark.anyio

AGENT = "kilocode"
TOKEN = SECRETS[10][1]  # a generated GitHub-format token
SPECS = {spec.name: spec for spec in specs()}
EVERY_SECRET = [text for _, text in SECRETS]


@pytest.fixture(scope="module")
def persisted() -> Iterator[ValkeyProcess]:
    """A Valkey of this module's own, writing its append-only file."""
    with valkey_server(persist=True) as server:
        yield server


@pytest.fixture
async def store(persisted: ValkeyProcess) -> AsyncIterator[Store]:
    store = RedisStore.from_url(persisted.url, BackendSettings())
    try:
        yield store
    finally:
        await store.aclose()


def make_app(store: Store, tmp_path: Path, policy: str) -> App:
    empty = tmp_path / "config.toml"
    empty.touch()
    settings = load_settings({"secrets": {"policy": policy}}, config_file=str(empty), environ={})
    return App(settings, store, registry=build_registry())


def make_peer(ns: Namespace) -> Peer:
    scope = ProjectScope(ns)
    everything = selection(["full"])
    return Peer(1, AGENT, scope, claimed_pid=None, peer_pid=None, peer_uid=None, groups=everything)


async def call(app: App, peer: Peer, tool: str, arguments: dict[str, Any], agent: str = AGENT) -> ToolReply:
    reply = await invoke(app, peer, agent, tool, arguments)
    assert reply is not None, tool
    return reply


def logged(events: Sequence[Mapping[str, Any]]) -> str:
    """The captured events as the daemon's log file would hold them (JSON)."""
    return "\n".join(json.dumps(event, default=str) for event in events)


async def activity_text(store: Store, app: App, ns: Namespace) -> str:
    await app.activity.flush()
    return repr(await store.execute("XRANGE", ns.key(ACTIVITY_STREAM), "-", "+"))


def field_of(tool: str, argument: str) -> str:
    """How a refusal names the argument: an array's item by its index."""
    kind = SPECS[tool].definition()["inputSchema"]["properties"][argument]["type"]
    return f"{argument}[0]" if kind == "array" else argument


@pytest.mark.parametrize("policy", ["refuse", "redact"])
async def test_every_secret_in_every_identifier_is_refused_and_kept_out_of_everything(
    store: Store, tmp_path: Path, persisted: ValkeyProcess, policy: str
) -> None:
    """refuse and redact alike (a redacted name would address something else): each corpus
    secret in each identifier argument of each tool is refused, naming the argument and the
    kind, never the text; the log (debug events included), the activity stream, every key
    under the project and the AOF hold no part of any secret; only the refusals are recorded."""
    app, ns = make_app(store, tmp_path, policy), fresh_namespace()
    peer = make_peer(ns)
    cases = identifier_cases()
    assert len(cases) >= 40  # every tool's ids, keys, names, paths, filters
    with capture_logs(processors=[scrub_event]) as events:
        for tool, argument in cases:
            for kind, secret in SECRETS:
                reply = await call(app, peer, tool, with_text(SPECS[tool], argument, secret))
                (text,) = reply.texts
                assert reply.is_error, (tool, argument, kind)
                assert text.startswith(f"{tool}: refused: an identifier holds a secret ("), text
                assert f"{kind} in '{field_of(tool, argument)}' at character" in text, text
                assert not leaked(text, [secret]), (tool, argument, kind)
            await app.activity.flush()  # the stream's buffer is bounded: write as we go
    assert not leaked(logged(events), EVERY_SECRET)
    calls = [e for e in events if e["event"] == "tool_call"]
    assert len(calls) == len(cases) * len(SECRETS)
    assert {(e["outcome"], e["reason"], e["key"]) for e in calls} == {("refused", "secret", None)}
    assert not any(e["event"] == "tool_call_started" for e in events)  # nothing ran
    dump = await dump_namespace(store, ns)
    keys, _ = await store.scan(ns.pattern("*"), 100)
    # The refusals' events, and nothing else (but the activity flushes' write records, whose
    # replies the dump below checks too).
    assert [k for k in keys if f":{WRITE_RECORD_PREFIX}" not in k] == [ns.key(ACTIVITY_STREAM)]
    assert "refused" in dump and not leaked(dump, EVERY_SECRET)
    await store.execute("PING")
    assert not leaked(aof_bytes(persisted.directory), EVERY_SECRET)


async def test_near_miss_identifiers_are_accepted(store: Store, tmp_path: Path) -> None:
    """Under refuse, no near-miss in any identifier is refused as a secret (other checks may
    refuse its shape, never crash); a UUID key, a hash as a task id, a path that mentions
    tokens as a lock resource work as any name."""
    app, ns = make_app(store, tmp_path, "refuse"), fresh_namespace()
    peer = make_peer(ns)
    for tool, argument in identifier_cases():
        for miss in NEAR_MISSES:
            reply = await call(app, peer, tool, with_text(SPECS[tool], argument, miss))
            assert "holds a secret" not in reply.texts[0], (tool, argument, miss)
            assert "internal error" not in reply.texts[0], (tool, argument, miss)
    key = f"temp:{NEAR_MISSES[0]}"
    assert (await call(app, peer, "redis_set", {"key": key, "value": "v"})).texts == ("OK",)
    assert (await call(app, peer, "redis_get", {"key": key})).texts == ("v",)
    sha = {"task_id": NEAR_MISSES[3], "steps": ["plan"], "replace": True}
    task = await call(app, peer, "task_create", sha)
    assert not task.is_error, task.texts
    resource = "src/auth/token_parser.py"
    lock = await call(app, peer, "lock_acquire", {"resource": resource})
    assert not lock.is_error and lock.structured is not None and lock.structured["acquired"]


async def test_each_declared_content_argument_is_scanned_by_its_service(store: Store, tmp_path: Path) -> None:
    """Every argument a tool declares content (so invoke() leaves it to the service) is refused
    holding a secret under refuse, and the log keeps it out: a log key made of content
    (message_send's subject) is logged redacted."""
    app, ns = make_app(store, tmp_path, "refuse"), fresh_namespace()
    peer = make_peer(ns)
    cases = content_cases()
    assert ("redis_set", "value") in cases and ("message_send", "subject") in cases
    with capture_logs(processors=[scrub_event]) as events:
        for tool, argument in cases:
            reply = await call(app, peer, tool, with_text(SPECS[tool], argument, f"see {TOKEN}"))
            assert reply.is_error and "holds a secret" in reply.texts[0], (tool, argument, reply.texts)
            assert TOKEN not in reply.texts[0]
    assert not leaked(logged(events), [TOKEN])
    assert not leaked(await activity_text(store, app, ns), [TOKEN])
    sent = [e["key"] for e in events if e["event"] == "tool_call" and e["tool"] == "message_send"]
    assert "plain-name: see [REDACTED:github_token]" in sent  # the subject's call


async def test_warn_runs_the_call_and_keeps_the_secret_out_of_log_and_activity(
    store: Store, tmp_path: Path
) -> None:
    """Under warn, a call with a secret in an identifier runs with it as given (stored under
    that name: documented), its reply ends with a warning naming the argument and kind; the
    log and the activity stream show it redacted, including the task events a handler
    records itself."""
    app, ns = make_app(store, tmp_path, "warn"), fresh_namespace()
    peer = make_peer(ns)
    key = f"cache:{TOKEN}"
    with capture_logs(processors=[scrub_event]) as events:
        stored = await call(app, peer, "redis_set", {"key": key, "value": "v"})
        read = await call(app, peer, "redis_get", {"key": key})
        created = await call(app, peer, "task_create", {"task_id": f"t-{TOKEN}", "steps": ["a"]})
        claimed = await call(app, peer, "task_claim", {"task_id": f"t-{TOKEN}"})
        for tool, argument in identifier_cases():
            reply = await call(app, peer, tool, with_text(SPECS[tool], argument, TOKEN))
            assert reply.texts[-1].startswith("warning: an identifier holds a secret ("), (tool, argument)
            assert f"github_token in '{field_of(tool, argument)}' at character 0" in reply.texts[-1]
            assert TOKEN not in reply.texts[-1]
    assert stored.texts[0] == "OK" and "github_token in 'key' at character 6" in stored.texts[1]
    assert read.texts[0] == "v"  # the name as given: it addresses what the agent meant
    assert not created.is_error and not claimed.is_error, (created.texts, claimed.texts)
    text = logged(events)
    assert "cache:[REDACTED:github_token]" in text and not leaked(text, [TOKEN])
    assert any(e["event"] == "secret_in_identifier" for e in events)
    activity = await activity_text(store, app, ns)
    assert "task_claimed" in activity and "t-[REDACTED:github_token]" in activity
    assert not leaked(activity, [TOKEN])
    assert TOKEN in await dump_namespace(store, ns)  # warn stores names as given


async def test_off_scans_no_identifier(store: Store, tmp_path: Path) -> None:
    """Under off nothing is scanned: the call runs, no warning, and the log shows the key as
    given (documented: off is off)."""
    app, ns = make_app(store, tmp_path, "off"), fresh_namespace()
    peer = make_peer(ns)
    with capture_logs(processors=[scrub_event]) as events:
        reply = await call(app, peer, "redis_set", {"key": f"cache:{TOKEN}", "value": "v"})
    assert reply.texts == ("OK",)
    (logged_call,) = [e for e in events if e["event"] == "tool_call"]
    assert logged_call["key"] == f"cache:{TOKEN}"


@pytest.mark.parametrize("policy", ["refuse", "redact", "warn"])
async def test_an_agent_name_holding_a_secret_is_refused(store: Store, tmp_path: Path, policy: str) -> None:
    """The agent name (a client's name, when the shim gave none) is in every log line and
    activity event of its connection: refused under every policy but off, logged redacted,
    nothing run."""
    app, ns = make_app(store, tmp_path, policy), fresh_namespace()
    peer = make_peer(ns)
    with capture_logs(processors=[scrub_event]) as events:
        reply = await call(app, peer, "redis_set", {"key": "k", "value": "v"}, agent=f"bot {TOKEN}")
    assert reply.is_error
    assert reply.texts[0].startswith("redis_set: refused: the agent name holds a secret (github_token")
    assert not leaked(logged(events) + reply.texts[0], [TOKEN])
    assert await store.execute("EXISTS", ns.key("k")) == 0
    assert app.presence.all() == []
    assert not leaked(await activity_text(store, app, ns), [TOKEN])


async def test_the_agent_name_is_not_scanned_under_off(store: Store, tmp_path: Path) -> None:
    """Under off an agent name is taken as given."""
    app, ns = make_app(store, tmp_path, "off"), fresh_namespace()
    reply = await call(app, make_peer(ns), "redis_set", {"key": "k", "value": "v"}, agent=f"bot {TOKEN}")
    assert reply.texts == ("OK",)


def test_the_corpus_secrets_are_found_whole() -> None:
    """The checks above look for each secret's parts: every corpus entry has at least one."""
    assert all(secret_parts(text) for text in EVERY_SECRET)
