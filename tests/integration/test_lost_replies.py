"""A lost backend reply never applies a write twice (issue 21): every state-changing tool, run
through the daemon's own call path (server/calls.invoke, the services, a RedisStore) against a
real Valkey behind a loopback proxy that loses the first reply to each of the call's writes
after the server applied it and breaks the connection, so the store resends the write.

Each test checks that the write was applied once (the state, read back), that the call
succeeded, and, at the proxy, that every lost reply was followed by a resend whose reply was the
lost one byte for byte. The same under a SIGKILL of a Valkey with appendfsync always between the
write and its reply."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_sync

from coordinatord.app import App
from coordinatord.context import Peer
from coordinatord.keyspace import FENCING_COUNTER, Namespace
from coordinatord.scope import ProjectScope
from coordinatord.server.calls import invoke
from coordinatord.settings import load_settings
from coordinatord.store import RedisStore
from tests.conftest import UPSTASH_TOKEN
from tests.support import ValkeyProcess, fresh_namespace, valkey_server
from tests.support_proxy import ReplyLosingProxy, reply_losing_proxy
from tests.support_upstash import FakeUpstash

pytestmark = pytest.mark.anyio

# Short bounds: a lost reply breaks the connection at once, so no test waits for a timeout.
BACKEND = {"backend": {"timeout_s": 5.0, "retries": 5, "retry_backoff_base_s": 0.01}}


@pytest.fixture
def proxy(valkey: ValkeyProcess) -> Iterator[ReplyLosingProxy]:
    with reply_losing_proxy(valkey.socket_path) as running:
        yield running


def build_app(url: str, tmp_path: Path, overrides: dict[str, Any] | None = None) -> App:
    empty = tmp_path / "config.toml"
    empty.touch()
    values = {**BACKEND, "tools": {"groups": ["full"]}, **(overrides or {})}
    settings = load_settings(values, config_file=str(empty), environ={})
    store = RedisStore.from_url(url, settings.backend)
    from coordinatord.tools import build_registry

    return App(settings, store, registry=build_registry())


@pytest.fixture
async def app(proxy: ReplyLosingProxy, tmp_path: Path) -> AsyncIterator[App]:
    built = build_app(proxy.url, tmp_path)
    try:
        yield built
    finally:
        await built.store.aclose()


class Caller:
    """Tool calls in one project, as one agent or another."""

    def __init__(self, app: App, ns: Namespace, root: Path) -> None:
        self.app, self.ns, self.root = app, ns, root

    def peer(self, agent: str) -> Peer:
        return Peer(
            conn_id=1,
            agent=agent,
            scope=ProjectScope(self.ns, str(self.root)),
            claimed_pid=None,
            peer_pid=None,
            peer_uid=1000,
            groups=self.app.default_groups,
        )

    async def __call__(self, tool: str, arguments: dict[str, Any], agent: str = "alice") -> Any:
        reply = await invoke(self.app, self.peer(agent), agent, tool, arguments)
        assert reply is not None and not reply.is_error, reply
        if reply.structured is not None:
            return reply.structured
        text = reply.texts[0]
        return json.loads(text) if text.startswith("{") else text


@pytest.fixture
def caller(app: App, tmp_path: Path) -> Caller:
    return Caller(app, fresh_namespace(), tmp_path)


async def losing(
    proxy: ReplyLosingProxy, caller: Caller, tool: str, arguments: dict[str, Any], agent: str = "alice"
) -> Any:
    """The call with the first reply to each of its writes lost; checks the resends at the proxy."""
    before = set(proxy.lost)
    proxy.losing = True
    try:
        result = await caller(tool, arguments, agent)
    finally:
        proxy.losing = False
    lost = {write_id: reply for write_id, reply in proxy.lost.items() if write_id not in before}
    assert lost, f"{tool}: no write of the call lost its reply (is it exactly-once?)"
    for write_id, reply in lost.items():
        assert proxy.answered[write_id] == 2, (tool, write_id)  # the lost one and its resend
        assert proxy.resent[write_id] == reply, (tool, write_id)  # the first reply, byte for byte
    return result


def valkey_client(valkey: ValkeyProcess) -> redis_sync.Redis:
    return redis_sync.Redis(unix_socket_path=str(valkey.socket_path), decode_responses=True)


async def test_task_writes_are_applied_once(proxy: ReplyLosingProxy, caller: Caller) -> None:
    """task_create, task_advance, task_update, task_claim and task_unclaim each lose their
    reply and are resent: one task, one step completed per advance, one claim, one release."""
    created = await losing(proxy, caller, "task_create", {"task_id": "t1", "steps": ["a", "b", "c"]})
    assert created["version"] == 1
    advanced = await losing(proxy, caller, "task_advance", {"task_id": "t1"})
    assert [s["status"] for s in advanced["steps"]] == ["completed", "in_progress", "pending"]
    updated = await losing(
        proxy, caller, "task_update", {"task_id": "t1", "step": "c", "status": "in_progress"}
    )
    assert updated["version"] == advanced["version"] + 1
    got = await caller("task_get", {"task_id": "t1"})
    assert [s["status"] for s in got["steps"]] == ["completed", "in_progress", "in_progress"]
    assert got["version"] == updated["version"]
    await caller("task_create", {"task_id": "t2", "steps": ["x"]})
    claim = await losing(proxy, caller, "task_claim", {"task_id": "t2"})
    assert claim["claimedBy"] == "alice", claim
    # Applied twice, the resend would find no claim and refuse ("not claimed by anyone").
    unclaim = await losing(proxy, caller, "task_unclaim", {"task_id": "t2"})
    assert (unclaim["claimedBy"], unclaim["ready"]) == (None, True)


async def test_session_writes_are_applied_once(proxy: ReplyLosingProxy, caller: Caller) -> None:
    """session_save, session_append and session_end lose their reply: one version, one turn,
    and the end reported as done (not as a conflict with the first application)."""
    saved = await losing(proxy, caller, "session_save", {"session_id": "s1", "context": {"goal": "x"}})
    assert saved["version"] == 1
    appended = await losing(
        proxy, caller, "session_append", {"session_id": "s1", "role": "user", "message": "hi"}
    )
    assert appended["history_length"] == 1
    history = await caller("session_history", {"session_id": "s1"})
    assert [t["message"] for t in history["turns"]] == ["hi"]
    resaved = await losing(proxy, caller, "session_save", {"session_id": "s1", "context": {"goal": "y"}})
    assert resaved["version"] == 2
    ended = await losing(proxy, caller, "session_end", {"session_id": "s1"})
    assert ended["history_length"] == 1 and ended["version"] == 2


async def test_message_writes_are_applied_once(proxy: ReplyLosingProxy, caller: Caller) -> None:
    """message_send delivers one message; message_read and message_ack mark it once."""
    sent = await losing(
        proxy, caller, "message_send", {"to": "bob", "subject": "s", "body": "b", "ack_required": True}
    )
    inbox = await caller("message_inbox", {}, agent="bob")
    assert [m["id"] for m in inbox["messages"]] == [sent["id"]]
    read = await losing(proxy, caller, "message_read", {"ids": [sent["id"]]}, agent="bob")
    assert [m["id"] for m in read["messages"]] == [sent["id"]] and read["not_found"] == []
    acked = await losing(proxy, caller, "message_ack", {"ids": [sent["id"]]}, agent="bob")
    assert acked["acked"] == [sent["id"]]
    thread = await caller("message_thread", {"thread_id": sent["thread_id"]})
    assert len(thread["messages"]) == 1 and thread["messages"][0]["acked_by"] == ["bob"]


async def test_ratelimit_hits_are_counted_once(proxy: ReplyLosingProxy, caller: Caller) -> None:
    """A hit of cost 3 counts 3, not 6; ratelimit_reset clears once and says how many windows."""
    hit = await losing(
        proxy, caller, "ratelimit_hit", {"service": "api", "limit": 10, "window_s": 60, "cost": 3}
    )
    assert (hit["allowed"], hit["used"]) == (True, 3)
    status = await caller("ratelimit_status", {"service": "api", "limit": 10, "window_s": 60})
    assert status["used"] == 3
    reset = await losing(proxy, caller, "ratelimit_reset", {"service": "api"})
    assert reset["windows_cleared"] == 1


async def test_lock_writes_are_applied_once(
    proxy: ReplyLosingProxy, caller: Caller, valkey: ValkeyProcess
) -> None:
    """lock_acquire takes one fencing number (not a reentry of its own first application),
    lock_renew renews, lock_release releases (not "not held")."""
    acquired = await losing(proxy, caller, "lock_acquire", {"resource": "db", "ttl": 60})
    assert acquired["acquired"] is True and acquired["reentered"] is False
    counter = valkey_client(valkey).get(caller.ns.key(FENCING_COUNTER))
    assert int(str(counter)) == acquired["fencing"]  # one INCR
    renewed = await losing(
        proxy, caller, "lock_renew", {"resource": "db", "token": acquired["token"], "ttl": 90}
    )
    assert renewed["renewed"] is True
    released = await losing(proxy, caller, "lock_release", {"resource": "db", "token": acquired["token"]})
    assert (released["released"], released["reason"]) == (True, "released")


async def test_file_reservations_are_applied_once(
    proxy: ReplyLosingProxy, caller: Caller, valkey: ValkeyProcess
) -> None:
    """files_reserve makes one reservation with one fencing number; renew and release act once."""
    reserved = await losing(proxy, caller, "files_reserve", {"paths": ["src/*.py"], "ttl_s": 60})
    assert reserved["reserved"] is True
    listed = await caller("files_list", {})
    assert [r["id"] for r in listed["reservations"]] == [reserved["id"]]
    counter = valkey_client(valkey).get(caller.ns.key(FENCING_COUNTER))
    assert int(str(counter)) == reserved["fencing"]
    renewed = await losing(proxy, caller, "files_renew", {"id": reserved["id"], "ttl_s": 90})
    assert renewed["renewed"] is True
    released = await losing(proxy, caller, "files_release", {"id": reserved["id"]})
    assert released["released"] is True


async def test_agent_status_writes_are_applied_once(proxy: ReplyLosingProxy, caller: Caller) -> None:
    """agent_register, agent_heartbeat and agent_unregister each succeed once resent."""
    await losing(proxy, caller, "agent_register", {"capabilities": ["python"]})
    await losing(proxy, caller, "agent_heartbeat", {"current_task": "t1"})
    listed = await caller("agent_list", {})
    me = next(a for a in listed["agents"] if a["agent"] == "alice")
    assert (me["current_task"], me["capabilities"]) == ("t1", ["python"])
    gone = await losing(proxy, caller, "agent_unregister", {})
    # What the agent's status was: applied twice, the resend would find (and return) nothing.
    assert (gone["current_task"], gone["capabilities"], gone["registered"]) == ("t1", ["python"], False)


async def test_redis_del_reports_what_it_deleted(proxy: ReplyLosingProxy, caller: Caller) -> None:
    """redis_del resent after a lost reply still says how many keys the first application
    deleted (2), not what the resend found (0)."""
    await caller("redis_set", {"key": "a", "value": "1"})
    await caller("redis_set", {"key": "b", "value": "2"})
    deleted = await losing(proxy, caller, "redis_del", {"keys": ["a", "b", "c"]})
    assert deleted == "Deleted 2 key(s)"
    assert await caller("redis_keys", {"pattern": "*"}) == "[]"  # the write records are not listed


async def test_activity_events_are_appended_once(
    proxy: ReplyLosingProxy, app: App, valkey: ValkeyProcess
) -> None:
    """The activity flusher (outside any tool call: a write id of its own) appends each event
    once when its reply is lost."""
    ns = fresh_namespace()
    for index in range(5):
        app.activity.record(ns, kind="tool", name=f"call-{index}", agent="alice")
    proxy.losing = True
    try:
        written = await app.activity.flush()
    finally:
        proxy.losing = False
    assert written == 5 and len(proxy.lost) == 1
    assert valkey_client(valkey).xlen(ns.key("_activity")) == 5


async def test_a_write_lost_to_a_valkey_sigkill_is_applied_once(tmp_path: Path) -> None:
    """The reply is lost because Valkey was SIGKILLed after it wrote (appendonly, appendfsync
    always) and restarted from its AOF: the write persisted with its record, so the resend gets
    the first reply and nothing is applied twice."""
    with (
        valkey_server(persist=True, fsync_always=True) as server,
        reply_losing_proxy(server.socket_path) as proxy,
    ):

        def crash() -> None:
            server.kill()
            server.start()

        app = build_app(
            proxy.url, tmp_path, {"backend": {**BACKEND["backend"], "timeout_s": 20.0, "retries": 20}}
        )
        try:
            caller = Caller(app, fresh_namespace(), tmp_path)
            await caller("task_create", {"task_id": "t", "steps": ["a", "b"]})
            await caller("session_save", {"session_id": "s", "context": {}})
            proxy.on_lost = crash
            advanced = await losing(proxy, caller, "task_advance", {"task_id": "t"})
            appended = await losing(
                proxy, caller, "session_append", {"session_id": "s", "role": "user", "message": "m"}
            )
            hit = await losing(
                proxy, caller, "ratelimit_hit", {"service": "x", "limit": 10, "window_s": 60, "cost": 3}
            )
            proxy.on_lost = None
            assert [s["status"] for s in advanced["steps"]] == ["completed", "in_progress"]
            assert appended["history_length"] == 1 and hit["used"] == 3
            got = await caller("task_get", {"task_id": "t"})
            assert [s["status"] for s in got["steps"]] == ["completed", "in_progress"]
            history = await caller("session_history", {"session_id": "s"})
            assert len(history["turns"]) == 1
            status = await caller("ratelimit_status", {"service": "x", "limit": 10, "window_s": 60})
            assert status["used"] == 3
        finally:
            await app.store.aclose()


async def test_upstash_resends_are_applied_once(upstash_emulator: FakeUpstash, tmp_path: Path) -> None:
    """Over Upstash REST (the emulator in front of Valkey): the HTTP reply to each write is lost
    after the command ran (the connection closes without an answer), the store sends the request
    again, and the issue's four writes are applied once."""
    empty = tmp_path / "config.toml"
    empty.touch()
    settings = load_settings({**BACKEND, "tools": {"groups": ["full"]}}, config_file=str(empty), environ={})
    from coordinatord.store.upstash import UpstashStore
    from coordinatord.tools import build_registry

    store = UpstashStore(upstash_emulator.url, UPSTASH_TOKEN, settings.backend)
    app = App(settings, store, registry=build_registry())
    try:
        caller = Caller(app, fresh_namespace(), tmp_path)
        await caller("task_create", {"task_id": "t", "steps": ["a", "b"]})
        await caller("session_save", {"session_id": "s", "context": {}})
        upstash_emulator.losing = True
        try:
            advanced = await caller("task_advance", {"task_id": "t"})
            appended = await caller("session_append", {"session_id": "s", "role": "user", "message": "m"})
            sent = await caller("message_send", {"to": "bob", "subject": "s", "body": "b"})
            hit = await caller("ratelimit_hit", {"service": "x", "limit": 10, "window_s": 60, "cost": 3})
        finally:
            upstash_emulator.losing = False
        assert len(upstash_emulator.lost) >= 4
        assert [s["status"] for s in advanced["steps"]] == ["completed", "in_progress"]
        assert appended["history_length"] == 1 and hit["used"] == 3
        got = await caller("task_get", {"task_id": "t"})
        assert [s["status"] for s in got["steps"]] == ["completed", "in_progress"]
        assert len((await caller("session_history", {"session_id": "s"}))["turns"]) == 1
        inbox = await caller("message_inbox", {}, agent="bob")
        assert [m["id"] for m in inbox["messages"]] == [sent["id"]]
        status = await caller("ratelimit_status", {"service": "x", "limit": 10, "window_s": 60})
        assert status["used"] == 3
    finally:
        await store.aclose()
