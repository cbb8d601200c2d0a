"""The editor link survives the daemon: calls in flight fail under their own ids, the same shim
processes go on after a restart (by the test or by auto-start), a shim started first waits."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError, StdioServerParameters

from tests.e2e.conftest import INITIALIZE, INITIALIZED, call_line, text_of
from tests.support import (
    COORDINATORD,
    DaemonProcess,
    ShimProcess,
    daemons_serving,
    short_tmpdir,
    stop_daemon_at,
)

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

SHIMS = 4
DEBUG = {"COORDINATORD_LOGGING__LEVEL": "debug"}  # tool_call_started marks a call as running


@pytest.fixture
def home() -> Iterator[Path]:
    """A HOME of the test's own: a shim under an MCP client reads ~/.config from it."""
    path = short_tmpdir("home-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_config(daemon: DaemonProcess, text: str = "") -> Path:
    """The daemon's config file (the one DaemonProcess points it at), naming its socket and state
    dir, so that a daemon a shim starts from it runs exactly as the test's own would."""
    config = daemon.root / "no-config.toml"
    config.write_text(f'socket = "{daemon.socket_path}"\nstate_dir = "{daemon.state_dir}"\n{text}')
    return config


def shim_args(
    daemon: DaemonProcess, agent: str, project: Path, *, autostart: bool = False, config: Path | None = None
) -> list[str]:
    args = ["shim", "--socket", str(daemon.socket_path), "--agent", agent, "--project", str(project)]
    if config is not None:
        args += ["--config", str(config)]
    if not autostart:
        args.append("--no-autostart")
    return args


@asynccontextmanager
async def clients(
    daemon: DaemonProcess, project: Path, mode: Any, home: Path, **options: Any
) -> AsyncIterator[tuple[Client, list[Client]]]:
    """A lock holder and SHIMS waiters, each an mcp.Client over its own shim process."""
    async with AsyncExitStack() as stack:

        async def client(agent: str) -> Client:
            params = StdioServerParameters(
                command=COORDINATORD,
                args=shim_args(daemon, agent, project, **options),
                env={"HOME": str(home)},
            )
            return await stack.enter_async_context(Client(params, mode=mode))

        holder = await client("holder")
        waiters = [await client(f"waiter-{index}") for index in range(SHIMS)]
        yield holder, waiters


async def waiting_calls_fail_when(
    daemon: DaemonProcess, holder: Client, waiters: list[Client], stop: Any
) -> None:
    """Each waiter has a lock_acquire waiting on a lock the holder has; ``stop`` ends the daemon;
    every one of those calls gets the restart error (matched by the SDK to its own id)."""
    for index in range(SHIMS):
        await holder.call_tool("lock_acquire", {"resource": f"res-{index}", "ttl": 3600})
    outcomes: dict[int, BaseException | str] = {}

    async def wait_for_lock(index: int) -> None:
        try:
            result = await waiters[index].call_tool(
                "lock_acquire", {"resource": f"res-{index}", "wait_ms": 30_000}
            )
            outcomes[index] = text_of(result)
        except MCPError as exc:
            outcomes[index] = exc

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for index in range(SHIMS):
                tg.start_soon(wait_for_lock, index)
            for index in range(SHIMS):
                await daemon.wait_for_log("tool_call_started", agent=f"waiter-{index}", tool="lock_acquire")
            stop()
    for index in range(SHIMS):
        outcome = outcomes[index]
        assert isinstance(outcome, MCPError), outcome
        # From the shim ("... daemon restarted; ..."), or from a daemon that stopped with the
        # call still running ("... daemon is stopping; this call was cancelled and ...").
        assert outcome.error.code == -32002
        assert "may or may not have taken effect" in str(outcome)


async def everyone_is_served(holder: Client, waiters: list[Client]) -> None:
    """The same client sessions (no new initialize from them) work again."""
    with anyio.fail_after(60):
        for index, client in enumerate([holder, *waiters]):
            written = await client.call_tool("redis_set", {"key": f"after-{index}", "value": str(index)})
            assert text_of(written) == "OK"
            assert text_of(await client.call_tool("redis_get", {"key": f"after-{index}"})) == str(index)
            assert len((await client.list_tools()).tools) > 8


def kill(daemon: DaemonProcess) -> None:
    assert daemon.process is not None
    daemon.process.kill()
    daemon.wait()


def terminate(daemon: DaemonProcess) -> None:
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0


@pytest.mark.parametrize("mode", ["legacy", "auto"])
@pytest.mark.parametrize("stop", [kill, terminate], ids=["SIGKILL", "SIGTERM"])
async def test_restart_by_hand_fails_calls_in_flight_and_the_sessions_go_on(
    workdir: Path, home: Path, mode: str, stop: Any
) -> None:
    """Four shims, each with a lock_acquire waiting: the daemon dies (SIGKILL, or SIGTERM with a
    short drain); each waiting call gets an error under its id; the test starts the daemon
    again; the same sessions are served, in both protocol eras."""
    daemon = DaemonProcess(workdir, env={**DEBUG, "COORDINATORD_SERVER__DRAIN_TIMEOUT_S": "0.2"})
    daemon.start()
    try:
        async with clients(daemon, workdir, mode, home) as (holder, waiters):
            await waiting_calls_fail_when(daemon, holder, waiters, lambda: stop(daemon))
            daemon.start()
            await everyone_is_served(holder, waiters)
        replayed = [e for e in daemon.log_events() if e.get("event") == "connection_opened"]
        assert len(replayed) >= 2 * (SHIMS + 1)  # every shim connected again by itself
    finally:
        assert daemon.stop() == 0


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_after_sigkill_the_next_call_starts_a_daemon(workdir: Path, home: Path, mode: str) -> None:
    """Same, but nobody restarts the daemon: the shims' next call starts one (exactly one)."""
    daemon = DaemonProcess(workdir, env=DEBUG)
    config = write_config(daemon, '[logging]\nlevel = "debug"\n')
    daemon.start()
    try:
        async with clients(daemon, workdir, mode, home, autostart=True, config=config) as (holder, waiters):
            await waiting_calls_fail_when(daemon, holder, waiters, lambda: kill(daemon))
            await everyone_is_served(holder, waiters)
            assert len(daemons_serving(daemon.socket_path)) == 1
            log = (daemon.state_dir / "autostart.log").read_text()
            assert log.count("--- started by coordinatord shim") == 1, log
    finally:
        stop_daemon_at(daemon.socket_path, daemon.state_dir)


def test_a_shim_started_before_the_daemon_waits_and_then_works(workdir: Path) -> None:
    """No daemon and no auto-start: the initialize waits; once the daemon is up it is answered,
    and the session works."""
    daemon = DaemonProcess(workdir)
    env = {**os.environ, "COORDINATORD_SHIM__WAIT_FOR_DAEMON_S": "120"}
    with ShimProcess([COORDINATORD, *shim_args(daemon, "early", workdir)], env=env) as shim:
        shim.send(INITIALIZE)
        shim.stderr(wait_for="waiting for one (auto-start is off)")
        daemon.start()
        try:
            assert "result" in shim.reply(timeout=60)
            shim.send(INITIALIZED, call_line(2, "redis_ping", {}))
            assert shim.reply()["result"]["content"][0]["text"] == "PONG"
            assert shim.close() == 0
        finally:
            assert daemon.stop() == 0


def test_a_shim_that_waits_too_long_says_why(workdir: Path) -> None:
    """With no daemon and auto-start off, a request fails after shim.wait_for_daemon_s under its
    id, with the command that would start the daemon."""
    socket_path = workdir / "none.sock"
    env = {**os.environ, "COORDINATORD_SHIM__WAIT_FOR_DAEMON_S": "0.3"}
    args = [COORDINATORD, "shim", "--socket", str(socket_path), "--project", str(workdir), "--no-autostart"]
    with ShimProcess(args, env=env) as shim:
        shim.send(INITIALIZE)
        error = shim.reply()["error"]
        assert error["code"] == -32000
        assert f"no coordinatord daemon answers at {socket_path} within 0.3 s" in error["message"]
        assert f"coordinatord serve --socket {socket_path}" in error["message"]
        assert shim.close() == 0


def test_the_first_call_starts_a_detached_daemon(workdir: Path) -> None:
    """Auto-start: the initialize is answered by a daemon the shim started in its own session,
    which outlives the shim and writes its output to autostart.log."""
    daemon = DaemonProcess(workdir)
    config = write_config(daemon)
    args = [COORDINATORD, *shim_args(daemon, "first", workdir, autostart=True, config=config)]
    try:
        with ShimProcess(args) as shim:
            shim.send(INITIALIZE)
            assert "result" in shim.reply(timeout=60)
            shim.send(INITIALIZED, call_line(2, "redis_set", {"key": "k", "value": "v"}))
            assert shim.reply()["result"]["content"][0]["text"] == "OK"
            shim.stderr(wait_for="starting one")
            assert shim.close() == 0
        (pid,) = daemons_serving(daemon.socket_path)
        assert os.getsid(pid) == pid  # its own session: no terminal, no editor's signals
        assert (daemon.state_dir / "autostart.log").exists()
        assert oct((daemon.state_dir / "autostart.log").stat().st_mode & 0o777) == oct(0o600)
    finally:
        stop_daemon_at(daemon.socket_path, daemon.state_dir)


def test_eight_shims_at_once_start_one_daemon(workdir: Path) -> None:
    """Eight editors open at the same moment with no daemon: one daemon starts, all are served."""
    daemon = DaemonProcess(workdir)
    config = write_config(daemon)
    shims = [
        ShimProcess([COORDINATORD, *shim_args(daemon, f"s{index}", workdir, autostart=True, config=config)])
        for index in range(8)
    ]
    try:
        for shim in shims:
            shim.send(INITIALIZE)
        for shim in shims:
            assert "result" in shim.reply(timeout=90)
        assert len(daemons_serving(daemon.socket_path)) == 1
        log = (daemon.state_dir / "autostart.log").read_text()
        assert log.count("--- started by coordinatord shim") == 1, log
        for shim in shims:
            assert shim.close() == 0
    finally:
        for shim in shims:
            shim.kill()
        stop_daemon_at(daemon.socket_path, daemon.state_dir)


def test_a_daemon_that_cannot_start_is_reported_with_its_log(workdir: Path) -> None:
    """A start that fails (a bad setting): the request fails at once with the daemon's own
    words and the log's name, not after the whole wait."""
    daemon = DaemonProcess(workdir)
    config = write_config(daemon, "[limits]\nmax_key_bytes = 1\n")
    env = {**os.environ, "COORDINATORD_SHIM__WAIT_FOR_DAEMON_S": "120"}
    args = [COORDINATORD, *shim_args(daemon, "bad", workdir, autostart=True, config=config)]
    with ShimProcess(args, env=env) as shim:
        shim.send(INITIALIZE)
        message = shim.reply(timeout=60)["error"]["message"]
        assert "exited with status 2" in message and "max_key_bytes" in message
        assert str(daemon.state_dir / "autostart.log") in message
        shim.stderr(wait_for="max_key_bytes")  # said on stderr too
        assert shim.close() == 0  # what it read, it answered
    assert daemons_serving(daemon.socket_path) == []
