"""A daemon whose socket file is removed or replaced binds it again, `status` and `stop` find a
daemon without a socket from its locks, and shims back off when daemons die as they start.

All with the real daemon and the real shim. The daemons a shim starts here read a config file of
the test's own (socket, state dir, backend), never the user's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import INITIALIZE, INITIALIZED, call_line
from tests.support import COORDINATORD, DaemonProcess, ShimProcess, daemons_serving, stop_daemon_at

pytestmark = pytest.mark.e2e

BOUND_S = 10.0
"""The issue's bound: the next shim gets a working daemon within this long."""


def shim(
    daemon: DaemonProcess, agent: str, config: Path | None = None, env: dict[str, str] | None = None
) -> ShimProcess:
    """A shim for ``daemon``'s socket: with ``config`` it may start a daemon from that file."""
    args = [COORDINATORD, "shim", "--socket", str(daemon.socket_path), "--agent", agent]
    args += ["--project", str(daemon.root)]
    args += ["--config", str(config)] if config is not None else ["--no-autostart"]
    return ShimProcess(args, env={**daemon.env, **(env or {})})


def config_for(daemon: DaemonProcess, text: str = "") -> Path:
    """A config file naming the daemon's socket and state dir, so that a daemon a shim starts
    from it would serve exactly there."""
    path = daemon.root / "shim-config.toml"
    path.write_text(f'socket = "{daemon.socket_path}"\nstate_dir = "{daemon.state_dir}"\n{text}')
    return path


def ping(process: ShimProcess, request_id: int) -> dict[str, Any]:
    process.send(call_line(request_id, "redis_ping", {}))
    return process.reply(timeout=BOUND_S)


def command(daemon: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """An operator command about the daemon's socket, with its state dir as a shim would find it."""
    env = {**daemon.env, "COORDINATORD_STATE_DIR": str(daemon.state_dir)}
    return subprocess.run(
        [COORDINATORD, *args, "--socket", str(daemon.socket_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def remove_socket(daemon: DaemonProcess) -> None:
    daemon.socket_path.unlink()


def replace_socket(daemon: DaemonProcess) -> None:
    """Another socket file (nothing listening on it) moved into the socket's place."""
    other = daemon.socket_path.with_name("other.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(other))
    os.replace(other, daemon.socket_path)


def remove_folder(daemon: DaemonProcess) -> None:
    """The socket's folder with the lock beside it, as a logout empties /run/user/<uid>."""
    shutil.rmtree(daemon.socket_path.parent)


def in_a_folder(workdir: Path, env: dict[str, str] | None = None) -> DaemonProcess:
    """A daemon whose socket is in a folder of its own (made by the daemon, mode 0700)."""
    daemon = DaemonProcess(workdir, env=env)
    daemon.socket_path = workdir / "run" / "c.sock"
    return daemon


@pytest.mark.parametrize(
    "lose", [remove_socket, replace_socket, remove_folder], ids=["removed", "replaced", "folder"]
)
def test_the_next_shim_gets_the_same_daemon_back(workdir: Path, lose: Any) -> None:
    """The socket file is removed, replaced by another socket, or goes with its folder: a shim
    that may start a daemon starts none (one holds the lock) and is served within 10 s by the
    same daemon, which bound a new socket (its folder made again, 0700); a shim connected before
    goes on on its old connection, never having lost it."""
    daemon = in_a_folder(workdir)
    daemon.start()
    config = config_for(daemon)
    try:
        with shim(daemon, "before") as before:
            before.send(INITIALIZE)
            assert "result" in before.reply(timeout=60)
            before.send(INITIALIZED)
            assert "result" in ping(before, 2)
            lose(daemon)
            started = time.monotonic()
            with shim(daemon, "after", config=config) as after:
                after.send(INITIALIZE)
                reply = after.reply(timeout=BOUND_S + 5)
                assert "result" in reply, reply
                assert time.monotonic() - started < BOUND_S + 5  # the reply's own bound, said
                after.send(INITIALIZED)
                assert "result" in ping(after, 2)
                assert after.close() == 0
            assert "result" in ping(before, 3)
            assert "lost the daemon" not in before.stderr()
        assert daemon.process is not None
        assert daemons_serving(daemon.socket_path) == [daemon.process.pid]  # no second daemon
        autostart_log = daemon.state_dir / "autostart.log"
        assert not autostart_log.exists() or "--- started by" not in autostart_log.read_text()
        events = [e["event"] for e in daemon.log_events()]
        assert "socket_lost" in events and "socket_rebound" in events
        assert stat.S_IMODE(daemon.socket_path.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(daemon.socket_path.stat().st_mode) == 0o600
    finally:
        assert daemon.stop() == 0
    assert not daemon.socket_path.exists()  # its own new socket, removed at the stop


def test_a_file_in_the_sockets_place_is_left_alone_and_the_daemon_stops(workdir: Path) -> None:
    """A regular file put where the socket was: the daemon will not delete it, so it stops
    cleanly (exit 0, reason socket_lost) rather than hold a path nobody can reach."""
    daemon = in_a_folder(workdir)
    daemon.start()
    daemon.socket_path.unlink()
    daemon.socket_path.write_text("someone's file\n")
    assert daemon.wait(timeout=30) == 0
    assert daemon.socket_path.read_text() == "someone's file\n"
    stopping = [e for e in daemon.log_events() if e["event"] == "daemon_stopping"]
    assert stopping and stopping[0]["reason"] == "socket_lost"
    failed = [e for e in daemon.log_events() if e["event"] == "socket_rebind_failed"]
    assert failed and "not a socket" in failed[0]["error"]


@pytest.mark.parametrize("lose", [remove_socket, remove_folder], ids=["removed", "folder"])
def test_status_and_stop_find_a_daemon_without_its_socket(workdir: Path, lose: Any) -> None:
    """The daemon is told to look at its socket only hourly, so it stays without one: `status`
    names its pid and the missing socket (from the lock beside the socket, or from the state
    dir's when the folder went too), and so does `doctor`'s daemon check; `stop` verifies the
    pid holds the lock, SIGTERMs it and sees it exit; a later `status` says that none runs."""
    daemon = in_a_folder(workdir, env={"COORDINATORD_SERVER__SOCKET_CHECK_S": "3600"})
    daemon.start()
    try:
        assert daemon.process is not None
        pid = daemon.process.pid
        lose(daemon)
        status = command(daemon, "status")
        assert status.returncode == 1
        assert f"daemon (pid {pid}) runs, but its socket {daemon.socket_path} is missing" in status.stderr
        assert f"coordinatord stop --socket {daemon.socket_path}" in status.stderr
        report = json.loads(command(daemon, "status", "--json").stdout)
        assert (report["running"], report["answering"], report["pid"]) == (True, False, pid)
        assert report["socket_file"] == "missing"
        home = workdir / "home"
        home.mkdir(exist_ok=True)
        doctor = subprocess.run(
            [COORDINATORD, "doctor", "--json"],
            env={
                **daemon.env,
                "HOME": str(home),
                "COORDINATORD_SOCKET": str(daemon.socket_path),
                "COORDINATORD_STATE_DIR": str(daemon.state_dir),
            },
            cwd=home,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        [check] = [c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "daemon"]
        # Not "not running" (which would send the user to start a second one): it runs, and how
        # to stop it if it does not come back.
        assert check["status"] == "warn", check
        assert f"daemon (pid {pid}) runs, but its socket {daemon.socket_path} is missing" in check["summary"]
        assert f"coordinatord stop --socket {daemon.socket_path}" in check["fix"]
        stopped = command(daemon, "stop", "--timeout", "30")
        assert stopped.returncode == 0, stopped.stderr
        assert f"stopped the coordinatord daemon (pid {pid})" in stopped.stdout
        assert daemon.wait(timeout=30) == 0
        after = command(daemon, "status")
        assert after.returncode == 1
        assert f"no coordinatord daemon answers at {daemon.socket_path}" in after.stderr
        assert command(daemon, "stop").returncode == 1  # none running, and it says so
    finally:
        daemon.stop()


# --- daemons killed as they start --------------------------------------------------------------

KILLS = 20
SHIMS = 8
CEILING_PER_S = 5.0
"""Connect attempts a second per shim, at most: the backoff (50 ms doubling to 2 s, with a random
half taken off; 0.25 s while the first start of an outage runs) makes about 1 a second after its
first few; the shim's old loop made hundreds."""


class StallingBackend:
    """A Unix socket where the daemons' backend should be, that accepts and never answers, so a
    daemon starting waits there (holding its locks, before its socket is bound) until killed; it
    notes each connecting daemon's pid (SO_PEERCRED). ``refuse()`` makes it close connections at
    once, so that the next daemon finds its backend down and serves all the same."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(64)
        self.held: list[socket.socket] = []
        self.pids: list[int] = []
        self.refusing = False
        self._arrived = threading.Condition()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            pid = struct.unpack("3i", creds)[0]
            with self._arrived:
                if self.refusing:
                    conn.close()
                    continue
                self.held.append(conn)
                if pid not in self.pids:
                    self.pids.append(pid)
                    self._arrived.notify_all()

    def next_daemon(self, seen: int, timeout: float = 60.0) -> int:
        """The pid of the ``seen + 1``-th daemon to reach its backend."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.pids) > seen, timeout=timeout):
                raise AssertionError(f"no daemon reached its backend within {timeout} s (seen {seen})")
            return self.pids[seen]

    def refuse(self) -> None:
        """From now on: connections closed at once, the one a daemon waits on too."""
        with self._arrived:
            self.refusing = True
            for conn in self.held:
                conn.close()

    def close(self) -> None:
        self.listener.close()
        for conn in self.held:
            conn.close()


class Editor:
    """One shim driven as an editor would: an ``initialize`` again each time one fails, until
    one is answered; every error's message is kept."""

    def __init__(self, process: ShimProcess) -> None:
        self.process = process
        self.errors: list[str] = []
        self.served = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        request_id = 0
        while not self._stop.is_set():
            request_id += 1
            self.process.send({**INITIALIZE, "id": request_id})
            try:
                reply = self.process.reply(timeout=60)
            except AssertionError:
                return
            if "result" in reply:
                self.served.set()
                return
            self.errors.append(str(reply["error"]["message"]))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=70)


@pytest.fixture
def stalling(workdir: Path) -> Iterator[StallingBackend]:
    backend = StallingBackend(workdir / "stall.sock")
    try:
        yield backend
    finally:
        backend.close()


@pytest.mark.timeout(400)
def test_daemons_killed_as_they_start_are_retried_with_backoff(
    workdir: Path, stalling: StallingBackend
) -> None:
    """Eight shims whose calls wait; each daemon they start is SIGKILLed once it waits on its
    backend (holding its locks, its socket not yet bound), twenty times. Each shim tries no more
    than a few times a second (counted by the shim itself), its calls fail only at the end of
    their wait (no loop of failures), each failure says what happened to the daemon just started
    (never an earlier daemon's words left in autostart.log), and once a daemon can start, all
    are served by one."""
    daemon = DaemonProcess(workdir)  # only for its places and environment: the shims start daemons
    wait_s = 3.0
    config = config_for(
        daemon,
        f'[backend]\nurl = "unix://{stalling.path}"\ntimeout_s = 120\nconnect_timeout_s = 60\nretries = 0\n'
        f"[shim]\nwait_for_daemon_s = {wait_s}\n",
    )
    daemon.state_dir.mkdir(mode=0o700)
    stale = "coordinatord 0.1.0 ready: socket elsewhere, backend gone, pid 4242424"
    (daemon.state_dir / "autostart.log").write_text(stale + "\n")
    processes = [shim(daemon, f"s{index}", config=config) for index in range(SHIMS)]
    editors: list[Editor] = []
    killed: list[int] = []
    try:
        began = time.monotonic()
        editors = [Editor(process) for process in processes]
        for _ in range(KILLS):
            pid = stalling.next_daemon(len(killed))
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        stalling.refuse()
        for editor in editors:
            assert editor.served.wait(timeout=120), f"never served: {editor.process.stderr()}"
        elapsed = time.monotonic() - began
        said = [editor.process.stderr() for editor in editors]
    finally:
        for editor in editors:
            editor.process.kill()
            editor.stop()
        stop_daemon_at(daemon.socket_path, daemon.state_dir)

    attempts = []
    for text in said:
        counted = re.search(
            r"connected to the daemon at \S+ after ([\d.]+) s \((\d+) connection attempt", text
        )
        assert counted, text
        outage_s, tries = float(counted.group(1)), int(counted.group(2))
        attempts.append(tries)
        assert tries <= CEILING_PER_S * max(outage_s, 1.0), (tries, outage_s, text)
    errors = [message for editor in editors for message in editor.errors]
    # Each call waited its whole wait before failing: at most one failure per wait per shim.
    assert len(errors) <= SHIMS * (elapsed / wait_s + 2), len(errors)
    assert not [message for message in errors if "ready:" in message or "4242424" in message]
    kills = [m for m in errors if "was killed by SIGKILL" in m]
    assert kills, errors[:5]
    for message in kills:
        named = re.search(r"\(pid (\d+)\) was killed", message)
        assert named is not None and int(named.group(1)) in killed
    print(f"{KILLS} daemons killed in {elapsed:.1f} s; {len(errors)} failed calls; attempts: {attempts}")
