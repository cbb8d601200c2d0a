"""secrets.policy on every write path, through the services, against real servers: refused
secrets write nothing, near-misses are stored, redacted secrets reach neither Redis, nor the
AOF, nor a session archive."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from coordinatord.errors import SecretFoundError, ToolError
from coordinatord.keyspace import KeyRules, Namespace, TtlPolicy
from coordinatord.presence import Presence
from coordinatord.services.agents import AgentService
from coordinatord.services.files import FileService
from coordinatord.services.kv import KvService
from coordinatord.services.messages import MessageService
from coordinatord.services.secret_guard import SecretGuard
from coordinatord.services.sessions import SessionService
from coordinatord.services.tasks import TaskService
from coordinatord.settings import (
    DEFAULT_TTL_PREFIXES,
    AgentSettings,
    BackendSettings,
    FileSettings,
    MessageSettings,
    SecretPolicy,
    SecretSettings,
    SessionSettings,
    TaskSettings,
)
from coordinatord.store import RedisStore, Store
from tests.secret_checks import aof_bytes, dump_namespace, secret_parts
from tests.secret_corpus import NEAR_MISSES, SECRETS
from tests.support import FakeClock, fresh_namespace, valkey_server

pytestmark = pytest.mark.anyio

Write = Callable[[Namespace, int, str], Awaitable[Any]]


class Paths:
    """Every write path an agent's text reaches, with one guard."""

    def __init__(self, store: Store, policy: SecretPolicy) -> None:
        guard = SecretGuard(SecretSettings(policy=policy))
        rules = KeyRules(max_key_bytes=256, max_value_bytes=1 << 20, max_keys_per_call=100)
        ttl = TtlPolicy(86_400, 30 * 86_400, DEFAULT_TTL_PREFIXES)
        self.kv = KvService(store, rules, ttl, 1000, guard)
        self.sessions = SessionService(store, SessionSettings(), FakeClock(), guard=guard)
        self.tasks = TaskService(store, TaskSettings(max_step_name_bytes=4096), FakeClock(), guard=guard)
        self.agents = AgentService(store, AgentSettings(), Presence(), FakeClock(), guard=guard)
        self.messages = MessageService(store, MessageSettings(max_subject_bytes=4096), guard)
        self.files = FileService(store, FileSettings(), guard)
        self.writes: dict[str, Write] = {
            "redis_set": lambda ns, i, t: self.kv.set(ns, f"temp:x:{i}", t, None),
            "session_save": lambda ns, i, t: self.sessions.save(ns, f"s{i}", {"notes": {"deploy": [t]}}),
            "session_append": lambda ns, i, t: self.sessions.append(ns, f"s{i}", "user", t),
            "task_steps": lambda ns, i, t: self.tasks.create(ns, f"t{i}", ["plan", t]),
            "task_labels": lambda ns, i, t: self.tasks.create(ns, f"l{i}", ["plan"], labels=[t]),
            "agent_mode": lambda ns, i, t: self.agents.register(ns, f"a{i}", ["py"], mode=t),
            "agent_status": lambda ns, i, t: self.agents.heartbeat(ns, f"h{i}", current_task=t),
            "agent_files": lambda ns, i, t: self.agents.heartbeat(ns, f"f{i}", files_open=[t]),
            "message_subject": lambda ns, i, t: self.messages.send(ns, "me", "you", t, "body"),
            "message_body": lambda ns, i, t: self.messages.send(ns, "me", "you", "hello", t),
            "files_reason": lambda ns, i, t: self.files.reserve(ns, f"r{i}", [f"src/{i}.py"], reason=t),
        }


# Paths whose fields have tight limits or formats of their own: a near-miss may be refused
# there for its size or shape, never as a secret.
LIMITED = {
    "task_steps",
    "task_labels",
    "agent_mode",
    "agent_status",
    "agent_files",
    "files_reason",
    "message_subject",
}


def read_text(path: str | Path) -> str:
    return Path(path).read_text(encoding="utf-8")


async def test_refuse_every_secret_on_every_path_and_write_nothing(store: Store) -> None:
    """Under refuse, each corpus secret is refused on each write path with its kind named and
    not its text, and the namespace stays empty."""
    paths, ns = Paths(store, "refuse"), fresh_namespace()
    for name, write in paths.writes.items():
        for index, (kind, text) in enumerate(SECRETS):
            with pytest.raises(SecretFoundError) as caught:
                await write(ns, index, f"see {text} now")
            assert kind in {k for k, _, _ in caught.value.findings}, (name, kind)
            assert all(part not in str(caught.value) for part in secret_parts(text)), (name, kind)
    keys, _ = await store.scan(ns.pattern("*"), 10)
    assert keys == []


async def test_refuse_accepts_every_near_miss(store: Store) -> None:
    """Under refuse, no near-miss is refused as a secret; where the field has room it is stored."""
    paths, ns = Paths(store, "refuse"), fresh_namespace()
    for name, write in paths.writes.items():
        for index, text in enumerate(NEAR_MISSES):
            try:
                await write(ns, index, text)
            except SecretFoundError as exc:
                pytest.fail(f"{name}: near-miss {index} refused: {exc}")
            except ToolError:
                assert name in LIMITED, (name, index)
    assert await paths.kv.get(ns, "temp:x:0") == NEAR_MISSES[0]
    dump = await dump_namespace(store, ns)
    assert NEAR_MISSES[10] in dump


async def test_redact_keeps_every_secret_byte_out_of_redis(store: Store) -> None:
    """Under redact, every path stores the text with [REDACTED:<kind>] and no secret substring."""
    paths, ns = Paths(store, "redact"), fresh_namespace()
    for name, write in paths.writes.items():
        for index, (_, text) in enumerate(SECRETS):
            try:
                await write(ns, index, f"see {text} now")
            except SecretFoundError:
                raise
            except ToolError:
                assert name in LIMITED, (name, index)  # redacted, then too long for its field
    dump = await dump_namespace(store, ns)
    assert "[REDACTED:github_token]" in dump and "[REDACTED:private_key]" in dump
    for _, text in SECRETS:
        for part in secret_parts(text):
            assert part not in dump


async def test_warn_stores_as_given(store: Store) -> None:
    """Under warn, the value is stored unchanged."""
    paths, ns = Paths(store, "warn"), fresh_namespace()
    text = SECRETS[10][1]
    await paths.kv.set(ns, "temp:w:1", text, None)
    assert await paths.kv.get(ns, "temp:w:1") == text


async def test_redacted_secrets_never_reach_the_aof() -> None:
    """Under redact, the append-only file of a persisting Valkey holds no secret substring."""
    with valkey_server(persist=True) as server:
        store = RedisStore.from_url(server.url, BackendSettings())
        try:
            paths, ns = Paths(store, "redact"), fresh_namespace()
            for index, (_, text) in enumerate(SECRETS):
                await paths.kv.set(ns, f"temp:a:{index}", text, None)
                await paths.sessions.save(ns, f"s{index}", {"k": text, "password": "Zq8#kLm2pW"})
                await paths.sessions.append(ns, f"s{index}", "assistant", text)
                await paths.messages.send(ns, "me", "you", "s", text)
            await store.execute("PING")
        finally:
            await store.aclose()
        aof = aof_bytes(server.directory)
        assert b"[REDACTED:" in aof
        for _, text in SECRETS:
            for part in secret_parts(text):
                assert part.encode() not in aof
        assert b"Zq8#kLm2pW" not in aof


@pytest.mark.parametrize("policy", ["off", "warn"])
async def test_archives_are_redacted_whatever_the_policy(
    store: Store, tmp_path: Path, policy: SecretPolicy
) -> None:
    """session_end and archive() write files with secrets redacted, even when the store kept them."""
    paths, ns = Paths(store, policy), fresh_namespace()
    text = "\n".join(t for _, t in SECRETS)
    await paths.sessions.save(ns, "s1", {"notes": text})
    await paths.sessions.append(ns, "s1", "user", text)
    archived = await paths.sessions.archive(ns, "s1", str(tmp_path))
    await paths.sessions.save(ns, "s2", {"notes": text})
    ended = await paths.sessions.end(ns, "s2", str(tmp_path))
    for path in (archived.archived_to, ended.archived_to):
        content = read_text(path)
        assert "[REDACTED:aws_access_key_id]" in content
        for _, secret in SECRETS:
            for part in secret_parts(secret):
                assert part not in content
    assert read_text(Path(archived.archived_to).parent / ".gitignore").strip().endswith("*")


async def test_archive_keep_writes_secrets_as_stored(store: Store, tmp_path: Path) -> None:
    """secrets.archive = "keep" leaves archive files as the store holds them."""
    token = SECRETS[10][1]
    guard = SecretGuard(SecretSettings(policy="off", archive="keep"))
    sessions = SessionService(store, SessionSettings(), FakeClock(), guard=guard)
    ns = fresh_namespace()
    await sessions.save(ns, "s1", {"t": token})
    result = await sessions.end(ns, "s1", str(tmp_path))
    assert token in read_text(result.archived_to)
