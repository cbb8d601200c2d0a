"""One connection's project and identity inside the daemon, against real servers: what an
unscoped connection may do (and that it writes nothing), and what a connection records about
the process on the other end."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from coordinatord.app import App
from coordinatord.context import Peer
from coordinatord.scope import ProjectScope
from coordinatord.server.calls import invoke
from coordinatord.settings import load_settings
from coordinatord.store import Store
from coordinatord.tools import build_registry
from tests.support import fresh_namespace

pytestmark = pytest.mark.anyio


@pytest.fixture
def app(store: Store, tmp_path: Path) -> App:
    empty = tmp_path / "config.toml"
    empty.touch()
    return App(load_settings({}, config_file=str(empty), environ={}), store, registry=build_registry())


def make_peer(app: App, scope: ProjectScope, claimed_pid: int | None, peer_pid: int | None) -> Peer:
    return Peer(
        conn_id=1,
        agent="kilocode",
        scope=scope,
        claimed_pid=claimed_pid,
        peer_pid=peer_pid,
        peer_uid=1000,
        groups=app.default_groups,
    )


async def test_an_unscoped_connection_may_only_ping_and_writes_nothing(app: App, tmp_path: Path) -> None:
    """Every project tool is refused with the fix named (and logged as refused, no_project);
    redis_ping answers; no presence, no activity event, no key is written."""
    peer = make_peer(app, ProjectScope.unscoped(str(tmp_path)), 42, 42)
    with capture_logs() as logs:
        app.connection_opened(peer)
        refused = await invoke(app, peer, "kilocode", "redis_set", {"key": "k", "value": "v"})
        task = await invoke(app, peer, "kilocode", "task_list", {})
        ping = await invoke(app, peer, "kilocode", "redis_ping", {})
        unknown = await invoke(app, peer, "kilocode", "no_such_tool", {})
        present = app.presence.all()
        app.connection_closed(peer)
    assert refused is not None and refused.is_error
    (text,) = refused.texts
    assert text.startswith("redis_set: this editor's shim has no project: ")
    assert str(tmp_path) in text and '"--project", "/path/to/repo"' in text
    assert task is not None and task.is_error and task.texts[0].startswith("task_list: this editor's")
    assert ping is not None and not ping.is_error and ping.texts == ("PONG",)
    assert unknown is None  # still the protocol's unknown-tool error, not a refusal
    assert app.activity.pending == 0
    assert present == []
    opened = next(e for e in logs if e["event"] == "connection_opened")
    assert (opened["project"], opened["reason"], opened["cwd"]) == (None, "no_project", str(tmp_path))
    calls = [(e["tool"], e["outcome"], e.get("reason")) for e in logs if e["event"] == "tool_call"]
    assert calls == [
        ("redis_set", "refused", "no_project"),
        ("task_list", "refused", "no_project"),
        ("redis_ping", "ok", None),
    ]


async def test_a_connection_records_both_pids_and_warns_when_they_differ(app: App) -> None:
    """connection_opened logs the kernel's pid and uid and the claimed pid; a claim that is not
    the kernel's pid is a connection_pid_mismatch warning; the activity log gets both events."""
    ns = fresh_namespace()
    peer = make_peer(app, ProjectScope(ns), claimed_pid=1, peer_pid=4242)
    with capture_logs() as logs:
        app.connection_opened(peer)
        app.connection_closed(peer)
    opened, mismatch, closed = logs
    assert (
        opened["event"],
        opened["pid"],
        opened["peer_pid"],
        opened["peer_uid"],
        opened["claimed_pid"],
    ) == (
        "connection_opened",
        4242,
        4242,
        1000,
        1,
    )
    assert (mismatch["event"], mismatch["log_level"]) == ("connection_pid_mismatch", "warning")
    assert (mismatch["peer_pid"], mismatch["claimed_pid"], mismatch["project"]) == (4242, 1, ns.project_id)
    assert (closed["event"], closed["agent"]) == ("connection_closed", "kilocode")
    await app.activity.flush()
    events = await app.activity.recent(ns, 10)
    assert [(e["kind"], e["name"], e["outcome"], e["agent"]) for e in events] == [
        ("connection", "connection_opened", "pid_mismatch", "kilocode"),
        ("connection", "connection_closed", "pid_mismatch", "kilocode"),
    ]
    assert all((e["peer_pid"], e["peer_uid"], e["claimed_pid"]) == (4242, 1000, 1) for e in events)
