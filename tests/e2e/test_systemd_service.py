"""The daemon as systemd runs it, with systemd's part played by the test: the listening socket
passed as fd 3 (socket activation), a notify socket it reads (READY=1, WATCHDOG=1, STOPPING=1),
and a backend it stops (SIGSTOP) to wedge the daemon's pings. Also ``coordinatord stop`` and
what a second daemon says and exits with."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinatord import control
from coordinatord.errors import EXIT_ALREADY_RUNNING
from tests.e2e.conftest import INITIALIZE, INITIALIZED, call_line
from tests.support import COORDINATORD, DaemonProcess, ShimProcess, ValkeyProcess, shim_command, valkey_server

pytestmark = pytest.mark.e2e

# systemd's part between fork and exec: the socket to fd 3, LISTEN_PID = the pid that execs.
ACTIVATE = (
    "import os, sys\n"
    "fd = int(sys.argv[1])\n"
    "os.dup2(fd, 3)\n"
    "os.close(fd)\n"
    "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1', LISTEN_FDNAMES='coordinatord.socket')\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


class Notifications:
    """The daemon's $NOTIFY_SOCKET, read by the test: every wait is bounded."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(15)

    def next(self) -> str:
        try:
            return self.sock.recv(4096).decode()
        except TimeoutError:
            raise AssertionError("no notification within 15 s") from None

    def until(self, wanted: str, limit: int = 200) -> list[str]:
        """Datagrams up to and including the first holding ``wanted`` (a line or a prefix)."""
        seen = []
        for _ in range(limit):
            message = self.next()
            seen.append(message)
            if any(line.startswith(wanted) for line in message.splitlines()):
                return seen
        raise AssertionError(f"{wanted!r} not among {limit} notifications: {seen[-5:]}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notifications(workdir: Path) -> Iterator[Notifications]:
    notify = Notifications(workdir / "notify.sock")
    try:
        yield notify
    finally:
        notify.close()


def daemon_env(workdir: Path, backend: str, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("COORDINATORD_", "LISTEN_", "WATCHDOG_")) and key != "NOTIFY_SOCKET"
    }
    (workdir / "no-config.toml").touch()
    env.update(
        COORDINATORD_CONFIG=str(workdir / "no-config.toml"),
        REDIS_URL=backend,
        NOTIFY_SOCKET=str(workdir / "notify.sock"),
        HOME=str(workdir),
        **extra,
    )
    return env


def serve_args(workdir: Path) -> list[str]:
    return [COORDINATORD, "serve", "--socket", str(workdir / "c.sock"), "--state-dir", str(workdir / "state")]


def stopped(process: subprocess.Popen[bytes]) -> tuple[int, str]:
    """SIGTERM unless gone; the exit status and output (killed if it will not stop)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        out = process.communicate(timeout=30)[0]
    except subprocess.TimeoutExpired:
        process.kill()
        out = process.communicate()[0]
    return process.returncode, out.decode(errors="replace")


def ping_through_a_shim(socket_path: Path) -> str:
    with ShimProcess(shim_command(socket_path)) as shim:
        shim.send(INITIALIZE, INITIALIZED, call_line(2, "redis_ping", {}))
        replies = shim.replies(2)
        return str(replies[2]["result"]["content"][0]["text"])


def test_socket_activated_daemon_serves_the_socket_it_was_given(
    workdir: Path, valkey: ValkeyProcess, notifications: Notifications
) -> None:
    """fd 3 is served (a real shim's call goes through), the daemon says it was activated, and
    at SIGTERM it says STOPPING=1, exits 0 and leaves systemd's socket where it was, still
    listening; its own lock file is gone."""
    path = workdir / "c.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()
    env = daemon_env(workdir, valkey.url)
    process = subprocess.Popen(
        [sys.executable, "-c", ACTIVATE, str(listener.fileno()), *serve_args(workdir)],
        env=env, pass_fds=(listener.fileno(),), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        assert "READY=1" in notifications.until("READY=1")[-1]
        assert ping_through_a_shim(path) == "PONG"
        status = control.request(path, "status", timeout=15)
        assert status["daemon"]["systemd"]["socket_activated"] is True
        assert (workdir / "c.sock.lock").exists()
        process.send_signal(signal.SIGTERM)
        assert "STOPPING=1" in notifications.until("STOPPING=1")[-1]
        code, out = stopped(process)
        assert code == 0, out
        assert path.exists() and not (workdir / "c.sock.lock").exists()
        late = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        late.settimeout(5)
        late.connect(str(path))  # systemd's backlog keeps it for the next daemon
        late.close()
    finally:
        stopped(process)
        listener.close()


def test_a_socket_activated_daemon_refuses_what_it_cannot_serve(workdir: Path, valkey: ValkeyProcess) -> None:
    """A datagram socket on fd 3: exit 2 (a restart cannot help), with what was wrong."""
    dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dgram.bind(str(workdir / "d.sock"))
    try:
        done = subprocess.run(
            [sys.executable, "-c", ACTIVATE, str(dgram.fileno()), *serve_args(workdir)],
            env=daemon_env(workdir, valkey.url), pass_fds=(dgram.fileno(),), capture_output=True,
            timeout=60, check=False,
        )  # fmt: skip
    finally:
        dgram.close()
    assert done.returncode == 2
    said = (done.stdout + done.stderr).decode()
    assert "fd 3 (coordinatord.socket) passed by systemd" in said and "not SOCK_STREAM" in said


def stop_cleanly(process: subprocess.Popen[bytes], notifications: Notifications) -> None:
    """SIGTERM: systemd hears STOPPING=1, and the daemon exits 0."""
    process.send_signal(signal.SIGTERM)
    notifications.until("STOPPING=1")
    code, out = stopped(process)
    assert code == 0, out


def test_watchdog_keepalive_stops_while_the_backend_is_wedged(
    workdir: Path, notifications: Notifications
) -> None:
    """WATCHDOG_USEC=1 s: WATCHDOG=1 arrives every half second; with the backend stopped
    (SIGSTOP) each tick says why it skipped it instead, and after SIGCONT they come back."""
    with valkey_server() as backend:
        env = daemon_env(workdir, backend.url, WATCHDOG_USEC="1000000")
        process = subprocess.Popen(
            serve_args(workdir), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        assert backend.process is not None
        try:
            notifications.until("READY=1")
            notifications.until("WATCHDOG=1")
            notifications.until("WATCHDOG=1")
            backend.process.send_signal(signal.SIGSTOP)
            try:
                notifications.until("STATUS=watchdog keep-alive skipped")
                # From here on every tick is a skip: one datagram per tick, none a keep-alive.
                for _ in range(2):
                    message = notifications.next()
                    assert "WATCHDOG=1" not in message and "keep-alive skipped" in message, message
            finally:
                backend.process.send_signal(signal.SIGCONT)
            assert "backend answers again" in notifications.until("WATCHDOG=1")[-1]
            stop_cleanly(process, notifications)
        finally:
            stopped(process)
    events = [json.loads(line) for line in (workdir / "state" / "coordinatord.log").read_text().splitlines()]
    assert any(event["event"] == "watchdog_keepalive_skipped" for event in events)


def run_stop(workdir: Path, socket_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(workdir)}  # no systemd unit of the user's is looked at
    env.pop("COORDINATORD_SOCKET", None)
    return subprocess.run(
        [COORDINATORD, "stop", "--socket", str(socket_path), "--timeout", "60"],
        env=env, capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip


def test_stop_stops_a_running_daemon_and_says_when_none_runs(workdir: Path, valkey: ValkeyProcess) -> None:
    """``coordinatord stop`` shuts a running daemon down cleanly (exit 0, socket and lock file gone, a
    shutdown_command stop logged), and with no daemon left it exits 1 saying none is running."""
    daemon = DaemonProcess(workdir, env={"REDIS_URL": valkey.url})
    daemon.start()
    try:
        assert daemon.process is not None
        pid = daemon.process.pid
        done = run_stop(workdir, daemon.socket_path)
        assert done.returncode == 0, done.stderr
        assert f"stopped the coordinatord daemon (pid {pid}) on {daemon.socket_path}" in done.stdout
        assert daemon.wait() == 0
        assert not daemon.socket_path.exists()
        assert not daemon.socket_path.with_name("c.sock.lock").exists()
        assert any(
            e["event"] == "daemon_stopping" and e["reason"] == "shutdown_command" for e in daemon.log_events()
        )
    finally:
        daemon.stop()
    none = run_stop(workdir, daemon.socket_path)
    assert none.returncode == 1
    assert f"no coordinatord daemon answers at {daemon.socket_path}: none is running" in none.stderr


def test_a_second_daemon_exits_10_and_names_status_and_stop(workdir: Path, valkey: ValkeyProcess) -> None:
    """Same socket, or same state dir on another socket: exit 10 (which the unit does not
    restart), naming the running daemon's pid and how to reach or stop it."""
    first = DaemonProcess(workdir, env={"REDIS_URL": valkey.url})
    first.start()
    try:
        assert first.process is not None
        same_socket = subprocess.run(first.args, env=first.env, capture_output=True, timeout=60, check=False)
        said = (same_socket.stdout + same_socket.stderr).decode()
        assert same_socket.returncode == EXIT_ALREADY_RUNNING, said
        assert f"(pid {first.process.pid}) is already serving on {first.socket_path}" in said
        assert f"coordinatord status --socket {first.socket_path}" in said
        assert f"coordinatord stop --socket {first.socket_path}" in said
        other = [
            COORDINATORD,
            "serve",
            "--socket",
            str(workdir / "other.sock"),
            "--state-dir",
            str(first.state_dir),
        ]
        same_state = subprocess.run(other, env=first.env, capture_output=True, timeout=60, check=False)
        said = (same_state.stdout + same_state.stderr).decode()
        assert same_state.returncode == EXIT_ALREADY_RUNNING, said
        assert f"(pid {first.process.pid}) uses the state dir {first.state_dir}" in said
        assert f"serving on {first.socket_path}" in said
        assert f"coordinatord stop --socket {first.socket_path}" in said
        assert not (workdir / "other.sock.lock").exists()  # the loser cleans up after itself
        assert ping_through_a_shim(first.socket_path) == "PONG"
    finally:
        assert first.stop() == 0


def test_watchdog_keepalive_goes_on_while_the_backend_is_down(
    workdir: Path, notifications: Notifications
) -> None:
    """A backend that is gone (connections refused at once) is not a hang: a restart would not
    bring it back, so WATCHDOG=1 keeps coming and systemd leaves the daemon (and the editors'
    calls) alone. (No retries: with a 1 s watchdog, the default retry backoff alone would
    outlast the quarter second a ping gets.)"""
    with valkey_server() as backend:
        env = daemon_env(workdir, backend.url, WATCHDOG_USEC="1000000", COORDINATORD_BACKEND__RETRIES="0")
        process = subprocess.Popen(
            serve_args(workdir), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            notifications.until("READY=1")
            notifications.until("WATCHDOG=1")
            backend.kill()
            for _ in range(3):
                message = notifications.next()
                assert "WATCHDOG=1" in message and "skipped" not in message, message
            stop_cleanly(process, notifications)
        finally:
            stopped(process)
