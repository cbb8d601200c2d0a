"""``coordinatord top`` end to end: a real daemon, agents, locks, tasks and budgets made through
real shims, then ``top --once`` as a separate process (no terminal), ``--all``, a stopped
daemon, and the live view under a pseudo-terminal (a frame, then ``q``, modes restored).
Also ``status``'s colours on a pseudo-terminal and ``serve``'s ready line.

Every wait is bounded and polls something the other process shows (its output, its exit); a
child still running at the end of a test is killed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from coordinatord import __version__, control
from coordinatord.errors import DaemonError
from coordinatord.keyspace import project_id_for
from tests.e2e.conftest import INITIALIZE, INITIALIZED, call_line
from tests.support import COORDINATORD, DaemonProcess, ShimProcess, running_daemon, shim_command, short_tmpdir

pytestmark = pytest.mark.e2e

WAIT_S = 30.0


@dataclass
class Setup:
    daemon: DaemonProcess
    app: Path
    docs: Path


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    """A daemon with two projects: in ``my-app`` two agents, a lock, two tasks and a budget,
    made by shims that stay connected; in ``docs`` one agent."""
    with running_daemon() as daemon:
        app, docs = daemon.root / "my-app", daemon.root / "docs"
        for project in (app, docs):
            (project / ".git").mkdir(parents=True)
        with (
            ShimProcess(shim_command(daemon.socket_path, "cline", app)) as cline,
            ShimProcess(shim_command(daemon.socket_path, "claude-code", app)) as claude,
            ShimProcess(shim_command(daemon.socket_path, "writer", docs)) as writer,
        ):
            for shim in (cline, claude, writer):
                shim.send(INITIALIZE)
                assert "result" in shim.reply()
                shim.send(INITIALIZED)
            call(cline, "agent_heartbeat", {"current_task": "docs"})
            call(cline, "lock_acquire", {"resource": "db:migrations", "ttl": 600})
            call(claude, "task_create", {"task_id": "docs", "steps": ["outline", "write", "review"]})
            call(claude, "task_advance", {"task_id": "docs"})
            call(claude, "ratelimit_hit", {"service": "github-api", "limit": 10, "window_s": 60, "cost": 3})
            call(writer, "agent_heartbeat", {"current_task": "chapter-1"})
            yield Setup(daemon, app, docs)


_ids = iter(range(2, 1_000_000))


def call(shim: ShimProcess, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    shim.send(call_line(next(_ids), tool, arguments))
    reply = shim.reply()
    assert "result" in reply and not reply["result"].get("isError"), reply
    return reply


def child_env(**extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("COORDINATORD_") and key not in ("NO_COLOR", "COLUMNS", "LINES", "TERM")
    }
    env["COORDINATORD_CONFIG"] = "/nonexistent/coordinatord-test.toml"  # never the user's config
    env.update(extra)
    return env


def top(setup: Setup, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    command = [COORDINATORD, "top", "--once", "--socket", str(setup.daemon.socket_path), *args]
    return subprocess.run(
        command, capture_output=True, text=True, env=child_env(COLUMNS="80"), cwd=cwd, timeout=WAIT_S
    )


def line_with(text: str, start: str) -> str:
    found = [line for line in text.splitlines() if line.startswith(start)]
    assert len(found) == 1, text
    return found[0]


def test_top_once_shows_the_agents_the_lock_the_task_and_the_budget_in_80_columns(setup: Setup) -> None:
    """``top --once`` on a pipe prints one plain frame within 80 columns showing the project's agents, its
    lock with holder and time left, the task's progress, the budget used and recent tool calls, and nothing
    of the other project."""
    done = top(setup, "--project", str(setup.app))
    assert done.returncode == 0, done.stderr
    frame = done.stdout
    assert max(len(line) for line in frame.splitlines()) <= 80, frame
    assert "\x1b[" not in frame  # not a terminal: no colours, no cursor movement
    assert project_id_for(str(setup.app.resolve())) in frame.splitlines()[0]
    assert "Agents  2 active, 2 known" in frame
    assert "docs" in line_with(frame, "cline ") and "active" in line_with(frame, "cline ")
    assert "(connected)" in line_with(frame, "claude-code ")
    lock = line_with(frame, "db:migrations")
    assert "cline" in lock and re.search(r"\b(9|10) min\b", lock), lock
    task = line_with(frame, "docs ")
    assert "in_progress" in task and "1/3 33%" in task and "write" in task
    assert "3/10" in line_with(frame, "github-api")
    assert "tool lock_acquire" in frame and "tool task_advance" in frame
    assert "writer" not in frame  # another project's agent


def test_top_finds_the_project_from_the_working_directory(setup: Setup) -> None:
    """Without ``--project``, top uses the project the working directory is in; outside any project it
    exits 2 and suggests ``--all``."""
    done = top(setup, cwd=setup.docs)
    assert done.returncode == 0, done.stderr
    assert "chapter-1" in line_with(done.stdout, "writer ")
    outside = top(setup, cwd=setup.daemon.root)
    assert outside.returncode == 2
    assert "is not inside a project" in outside.stderr and "--all" in outside.stderr


def test_top_all_shows_every_project(setup: Setup) -> None:
    """``top --all`` shows both projects' ids and contents in one frame within 80 columns, with the project
    count in the title line."""
    done = top(setup, "--all")
    assert done.returncode == 0, done.stderr
    frame = done.stdout
    assert max(len(line) for line in frame.splitlines()) <= 80, frame
    assert "2 projects" in frame.splitlines()[0]
    for root in (setup.app, setup.docs):
        assert project_id_for(str(root.resolve())) in frame
    assert "db:migrations" in frame and "chapter-1" in frame


def test_the_overview_command_caps_its_rows_and_counts_the_rest(setup: Setup) -> None:
    """The daemon's ``overview`` control command sends at most ten lock rows with the total held and the
    count left out, carries every section and the daemon version, and refuses a request naming no project."""
    with ShimProcess(shim_command(setup.daemon.socket_path, "locker", setup.docs)) as shim:
        shim.send(INITIALIZE)
        assert "result" in shim.reply()
        shim.send(INITIALIZED)
        for index in range(13):
            call(shim, "lock_acquire", {"resource": f"file-{index:02d}", "ttl": 600})
        reply = control.request(setup.daemon.socket_path, "overview", {"project": str(setup.docs)})
    (project,) = reply["projects"]
    assert project["project_id"] == project_id_for(str(setup.docs.resolve()))
    assert set(project) >= {"agents", "locks", "tasks", "ratelimits", "activity", "error"}
    locks = project["locks"]
    assert (locks["held"], len(locks["rows"]), locks["more"]) == (13, 10, 3)
    assert {"resource", "held_by", "fencing", "expires_in"} <= set(locks["rows"][0])
    assert reply["daemon"]["version"] == __version__
    with pytest.raises(DaemonError, match="either 'project'"):
        control.request(setup.daemon.socket_path, "overview", {})


def test_top_once_without_a_daemon_exits_1_and_says_how_to_start_one() -> None:
    """With no daemon on the socket, ``top --once`` exits 1 and prints the ``coordinatord serve --socket``
    command that would start one there."""
    socket_path = short_tmpdir() / "none.sock"
    try:
        command = [COORDINATORD, "top", "--once", "--all", "--socket", str(socket_path)]
        done = subprocess.run(command, capture_output=True, text=True, env=child_env(), timeout=WAIT_S)
    finally:
        shutil.rmtree(socket_path.parent, ignore_errors=True)
    assert done.returncode == 1
    assert f"no coordinatord daemon answers at {socket_path}" in done.stderr
    assert f"start it with: coordinatord serve --socket {socket_path}" in done.stderr


# -- under a pseudo-terminal -------------------------------------------------------------------


@dataclass
class Terminal:
    master: int
    slave: int
    process: subprocess.Popen[bytes]
    seen: bytes = b""

    def read_until(self, needle: bytes, timeout: float = WAIT_S) -> bytes:
        """What the child wrote, once it has written ``needle`` (at most ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while needle not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {needle!r} within {timeout} s; got {self.seen[-2000:]!r}")
            if select.select([self.master], [], [], min(left, 0.5))[0]:
                self.seen += os.read(self.master, 65536)
        return self.seen

    def finish(self, timeout: float = WAIT_S) -> tuple[int, bytes]:
        """Wait for the child to exit, reading all it writes; its exit code and its output."""
        deadline = time.monotonic() + timeout
        while True:
            ready = select.select([self.master], [], [], 0.1)[0]
            if ready:
                self.seen += os.read(self.master, 65536)
            elif self.process.poll() is not None:
                return self.process.returncode, self.seen
            if time.monotonic() > deadline:
                raise AssertionError(f"still running after {timeout} s; got {self.seen[-2000:]!r}")


@contextlib.contextmanager
def terminal(args: list[str], env: dict[str, str], *, stdin_tty: bool = True) -> Iterator[Terminal]:
    """``args`` with stdout and stderr (and stdin) on the slave of a new 80x24 pseudo-terminal,
    in a session of its own (the pty is not its controlling terminal, so no job control can
    stop it, and the test's own terminal, if any, is never touched)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    process = subprocess.Popen(
        args,
        stdin=slave if stdin_tty else subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    try:
        yield Terminal(master, slave, process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=WAIT_S)
        os.close(master)
        os.close(slave)


def test_top_live_draws_frames_and_q_quits_with_the_terminal_restored(setup: Setup) -> None:
    """On a terminal, live top switches to the alternate screen in cbreak mode and draws frames; pressing q
    exits 0 with the terminal's modes and main screen restored exactly."""
    args = [COORDINATORD, "top", "--socket", str(setup.daemon.socket_path), "--project", str(setup.app)]
    with terminal(args, child_env(TERM="xterm-256color")) as term:
        before = termios.tcgetattr(term.slave)
        assert before[3] & termios.ICANON
        term.read_until(b"q quits")
        shown = term.read_until(b"db:migrations")
        assert b"\x1b[?1049h" in shown  # the alternate screen
        assert not termios.tcgetattr(term.slave)[3] & termios.ICANON  # cbreak while it runs
        os.write(term.master, b"q")
        code, output = term.finish()
        assert code == 0, output[-2000:]
        assert termios.tcgetattr(term.slave) == before
        assert output.rfind(b"\x1b[?1049l") > output.rfind(b"q quits")  # back from the alternate screen


def test_top_live_without_a_daemon_says_so_and_keeps_trying() -> None:
    """Live top with no daemon shows how to start one and keeps running (retrying) instead of exiting, and
    still quits on q."""
    socket_path = short_tmpdir() / "none.sock"
    try:
        args = [COORDINATORD, "top", "--all", "--interval", "0.2", "--socket", str(socket_path)]
        with terminal(args, child_env(TERM="xterm")) as term:
            term.read_until(b"no coordinatord daemon answers")
            term.read_until(b"start it with: coordinatord serve --socket")
            assert term.process.poll() is None
            os.write(term.master, b"q")
            assert term.finish()[0] == 0
    finally:
        shutil.rmtree(socket_path.parent, ignore_errors=True)


def test_top_live_with_stdin_not_a_terminal_stops_on_sigterm(setup: Setup) -> None:
    """Live top whose stdin is not a terminal (so q cannot be read) still draws and exits 0 on SIGTERM."""
    args = [COORDINATORD, "top", "--socket", str(setup.daemon.socket_path), "--project", str(setup.app)]
    with terminal(args, child_env(TERM="xterm"), stdin_tty=False) as term:
        term.read_until(b"q quits")
        term.process.send_signal(signal.SIGTERM)
        assert term.finish()[0] == 0


def test_status_is_coloured_on_a_terminal_only(setup: Setup) -> None:
    """``status`` colours its output on a terminal, and prints no escape codes with NO_COLOR, with
    ``--no-color``, on a pipe or as JSON."""
    args = [COORDINATORD, "status", "--socket", str(setup.daemon.socket_path)]
    with terminal(args, child_env(TERM="xterm")) as term:
        code, output = term.finish()
    assert code == 0 and b"\x1b[1;32mis running\x1b[0m" in output and b"\x1b[32mhealthy" in output
    for extra, env in (([], {"NO_COLOR": "1"}), (["--no-color"], {})):
        with terminal([*args, *extra], child_env(TERM="xterm", **env)) as term:
            code, output = term.finish()
        assert code == 0 and b"is running" in output and b"\x1b[" not in output, (extra, env)
    piped = subprocess.run(args, capture_output=True, env=child_env(TERM="xterm"), timeout=WAIT_S)
    assert piped.returncode == 0 and b"is running" in piped.stdout and b"\x1b[" not in piped.stdout
    as_json = subprocess.run([*args, "--json"], capture_output=True, env=child_env(), timeout=WAIT_S)
    assert b"\x1b[" not in as_json.stdout and b'"running": true' in as_json.stdout


# -- serve's ready line ------------------------------------------------------------------------


def ready_lines(output: bytes) -> list[str]:
    return [
        line for line in output.decode().splitlines() if line.startswith(f"coordinatord {__version__} ready:")
    ]


def test_serve_prints_one_ready_line_when_console_logging_is_off() -> None:
    """With console logging off, ``serve`` prints exactly one ready line naming the version, socket,
    backend and pid, so whoever started it knows it is up."""
    root = short_tmpdir()
    daemon = DaemonProcess(root, env={"COORDINATORD_LOGGING__CONSOLE": "never"})
    try:
        daemon.start()
        assert daemon.process is not None
        pid = daemon.process.pid
        assert daemon.stop() == 0
        (line,) = ready_lines(daemon.output)
        assert line == (
            f"coordinatord {__version__} ready: socket {daemon.socket_path}, backend embedded "
            f"valkey-server at {daemon.state_dir / 'valkey.sock'}, pid {pid}"
        )
    finally:
        daemon.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_serve_with_console_logging_on_prints_the_log_line_only() -> None:
    """With console logging on, the ready line is left out and the daemon_ready log event is printed once
    instead, so readiness is not reported twice."""
    root = short_tmpdir()
    daemon = DaemonProcess(root, env={"COORDINATORD_LOGGING__CONSOLE": "always"})
    try:
        daemon.start()
        assert daemon.stop() == 0
        assert ready_lines(daemon.output) == []
        assert daemon.output.decode().count("daemon_ready") == 1
    finally:
        daemon.stop()
        shutil.rmtree(root, ignore_errors=True)
