"""The daemon as a process: socket ownership, shutdown, persistence, faults, bad input."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from tests.e2e.conftest import INITIALIZE, INITIALIZED, RawConnection, call_line, connect, frames, text_of
from tests.support import COORDINATORD, DaemonProcess, shim_command, valkey_server

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


def test_sigterm_exits_zero_and_removes_the_socket(workdir: Path) -> None:
    """SIGTERM stops the daemon cleanly: exit code 0, socket file gone."""
    daemon = DaemonProcess(workdir)
    daemon.start()
    assert daemon.socket_path.exists()
    assert oct(daemon.socket_path.stat().st_mode & 0o777) == oct(0o600)
    assert daemon.stop() == 0
    assert not daemon.socket_path.exists()


async def test_data_survives_a_daemon_restart(workdir: Path) -> None:
    """With the embedded Valkey, what was written before a restart is there after it."""
    first = DaemonProcess(workdir)
    first.start()
    async with connect(first.socket_path, project=workdir) as client:
        assert (
            text_of(await client.call_tool("redis_set", {"key": "kept", "value": "across restarts"})) == "OK"
        )
    assert first.stop() == 0
    second = DaemonProcess(workdir)
    second.start()
    try:
        async with connect(second.socket_path, project=workdir) as client:
            assert text_of(await client.call_tool("redis_get", {"key": "kept"})) == "across restarts"
    finally:
        assert second.stop() == 0


async def test_stale_socket_file_is_replaced(workdir: Path) -> None:
    """A socket file left by a crashed daemon does not stop a new one from starting."""
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(workdir / "c.sock"))
    stale.close()  # the file stays; nothing listens on it
    daemon = DaemonProcess(workdir)
    daemon.start()
    try:
        async with connect(daemon.socket_path, project=workdir) as client:
            assert text_of(await client.call_tool("redis_ping", {})) == "PONG"
    finally:
        assert daemon.stop() == 0


async def test_second_daemon_is_refused_and_first_keeps_serving(workdir: Path) -> None:
    """A second daemon on the same socket exits non-zero with a clear message."""
    first = DaemonProcess(workdir)
    first.start()
    try:
        with anyio.fail_after(60):
            second = await anyio.run_process(first.args, env=first.env, check=False)
        said = (second.stdout + second.stderr).decode()
        assert second.returncode != 0
        assert "already serving" in said
        assert first.process is not None and f"pid {first.process.pid}" in said
        async with connect(first.socket_path, project=workdir) as client:
            assert text_of(await client.call_tool("redis_ping", {})) == "PONG"
    finally:
        assert first.stop() == 0


def test_shim_without_a_daemon_answers_with_errors(workdir: Path) -> None:
    """No daemon: every request gets an error naming the socket and the start command."""
    missing = workdir / "nobody.sock"
    stdin = frames(INITIALIZE, INITIALIZED, call_line(2, "redis_ping", {}))
    done = subprocess.run(shim_command(missing), input=stdin, capture_output=True, timeout=30, check=False)
    assert done.returncode != 0
    replies = [json.loads(line) for line in done.stdout.splitlines()]
    assert [reply["id"] for reply in replies] == [1, 2]
    for reply in replies:
        message = reply["error"]["message"]
        assert f"no coordinatord daemon answers at {missing}" in message
        assert f"coordinatord serve --socket {missing}" in message
    assert f"no coordinatord daemon answers at {missing}" in done.stderr.decode()


def test_shim_relays_until_stdin_closes_and_stays_light(daemon: DaemonProcess, workdir: Path) -> None:
    """Replies to requests sent just before stdin EOF arrive; the shim never loads heavy modules."""
    script = (
        "import sys\n"
        "from coordinatord.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "loaded = {m.split('.')[0] for m in sys.modules}\n"
        "heavy = sorted(loaded & {'mcp', 'pydantic', 'redis', 'anyio', 'structlog'})\n"
        "sys.stderr.write('HEAVY=' + ','.join(heavy) + '\\n')\n"
        "sys.exit(code)\n"
    )
    stdin = frames(
        INITIALIZE,
        INITIALIZED,
        call_line(2, "redis_set", {"key": "relay", "value": "v"}),
        # JSON-RPC requests on one connection run concurrently: no ordering between 2 and 3.
        call_line(3, "redis_ping", {}),
    )
    args = [
        sys.executable,
        "-c",
        script,
        "shim",
        "--socket",
        str(daemon.socket_path),
        "--no-autostart",
        "--project",
        str(workdir),
    ]
    done = subprocess.run(args, input=stdin, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    replies = {reply["id"]: reply for reply in map(json.loads, done.stdout.splitlines())}
    assert replies[2]["result"]["content"][0]["text"] == "OK"
    assert replies[3]["result"]["content"][0]["text"] == "PONG"
    assert "HEAVY=\n" in done.stderr.decode()


def test_garbage_on_the_socket_gets_errors_and_harms_nobody(daemon: DaemonProcess) -> None:
    """Garbage lines get JSON-RPC errors; the same and other connections keep working."""
    bystander = RawConnection(daemon.socket_path)
    bad = RawConnection(daemon.socket_path)
    try:
        bystander.send(frames(INITIALIZE))
        assert "result" in bystander.reply()
        bad.send(b"\xff\xfe not json at all\n")
        error = bad.reply()
        assert error["id"] is None
        assert error["error"]["code"] == -32700 and "Parse error" in str(error["error"]["message"])
        bad.send(b'{"id": 9, "no": "method"}\n')
        assert bad.reply() == {
            "jsonrpc": "2.0",
            "id": 9,
            "error": {"code": -32600, "message": "Invalid Request: not a JSON-RPC 2.0 message"},
        }
        bad.send(b'{"jsonrpc": "2.0", "id": 10, "method": "ping", "params": {\n')  # cut short
        error = bad.reply()
        assert error["id"] == 10 and error["error"]["code"] == -32700
        bad.send(b"[" * (5 * 1024 * 1024) + b"\n")  # above server.max_line_bytes
        assert "max_line_bytes" in str(bad.reply()["error"])
        bad.send(b'{"id": 11, "params": "' + b"x" * (5 * 1024 * 1024) + b'"}\n')
        assert bad.reply() == {
            "jsonrpc": "2.0",
            "id": 11,
            "error": {
                "code": -32600,
                "message": "Invalid Request: message longer than server.max_line_bytes = 4194304 bytes",
            },
        }
        bad.send(frames(INITIALIZE, INITIALIZED, call_line(2, "redis_ping", {})))
        assert "result" in bad.reply()
        assert bad.reply()["result"]["content"][0]["text"] == "PONG"
        bystander.send(frames(INITIALIZED, call_line(2, "redis_ping", {})))
        assert bystander.reply()["result"]["content"][0]["text"] == "PONG"
    finally:
        bad.close()
        bystander.close()


async def test_backend_killed_mid_run_then_back(workdir: Path) -> None:
    """Backend down: calls fail fast naming it, the daemon lives on and recovers."""
    with valkey_server() as backend:
        env = {
            "REDIS_URL": backend.url,
            "COORDINATORD_BACKEND__TIMEOUT_S": "1",
            "COORDINATORD_BACKEND__RETRIES": "1",
        }
        daemon = DaemonProcess(workdir, env=env)
        daemon.start()
        try:
            async with connect(daemon.socket_path, project=workdir) as client:
                assert text_of(await client.call_tool("redis_set", {"key": "k", "value": "1"})) == "OK"
                backend.kill()
                down = await client.call_tool("redis_get", {"key": "k"})
                assert down.is_error
                assert f"backend {backend.url}" in text_of(down)
                backend.start()
                assert text_of(await client.call_tool("redis_set", {"key": "k", "value": "2"})) == "OK"
                assert text_of(await client.call_tool("redis_get", {"key": "k"})) == "2"
        finally:
            assert daemon.stop() == 0


async def test_each_call_is_logged_without_its_value(workdir: Path) -> None:
    """One JSON event per call: agent, project, tool, key, duration, outcome — never the value."""
    daemon = DaemonProcess(workdir)
    daemon.start()
    try:
        async with connect(daemon.socket_path, agent="kilocode", project=workdir) as client:
            await client.call_tool("redis_set", {"key": "agent:context:s9", "value": "TOP-SECRET-VALUE"})
            await client.call_tool("redis_set", {"key": "bad", "value": "v", "ttl": -1})
    finally:
        assert daemon.stop() == 0
    log = daemon.log_text()
    assert "TOP-SECRET-VALUE" not in log
    events = [json.loads(line) for line in log.splitlines()]
    calls = [event for event in events if event["event"] == "tool_call"]
    assert [(c["tool"], c["key"], c["outcome"]) for c in calls] == [
        ("redis_set", "agent:context:s9", "ok"),
        ("redis_set", "bad", "refused"),
    ]
    assert all(c["agent"] == "kilocode" and c["project"].startswith("cd-") for c in calls)
    assert all(isinstance(c["duration_ms"], float) for c in calls)


def test_console_help_and_version() -> None:
    """--help lists the commands with examples; --version prints the version."""
    helped = subprocess.run([COORDINATORD, "--help"], capture_output=True, text=True, check=True)
    for command in ("serve", "shim", "config"):
        assert command in helped.stdout
    assert "examples:" in helped.stdout
    version = subprocess.run([COORDINATORD, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("coordinatord ")


def test_stop_signal_is_sigterm_or_sigint(workdir: Path) -> None:
    """SIGINT (Ctrl-C in a terminal) stops the daemon as cleanly as SIGTERM."""
    daemon = DaemonProcess(workdir)
    daemon.start()
    daemon.signal(signal.SIGINT)
    assert daemon.stop() == 0
    assert os.path.exists(daemon.state_dir / "coordinatord.log")
