"""The daemon's lifecycle: claim the socket, open the store, serve, drain, stop.

Components start in order as nested context managers and stop in reverse; SIGTERM/SIGINT stop
accepting connections, let in-flight calls finish (bounded by ``server.drain_timeout_s``) and
exit 0.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import structlog

from coordinatord import __version__, control_overview, control_projects, control_sessions, logs
from coordinatord.app import App
from coordinatord.errors import ConfigError, CoordinatordError
from coordinatord.jobs import Jobs
from coordinatord.jobs.schedule import register_all
from coordinatord.mcp_server import build_server
from coordinatord.server import ConnectionServer, SocketClaim, hold_lock, listening
from coordinatord.settings import Settings
from coordinatord.status import DaemonStatus
from coordinatord.store import open_store

log = structlog.get_logger("coordinatord.daemon")

CLOSE_TIMEOUT_S = 2.0
"""After draining, how long connections get to write their last bytes and close."""


def run_daemon(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT. Returns the process exit code."""
    try:
        _prepare_state_dir(settings.state_dir)
        logs.configure(settings.logging, settings.log_file)
    except OSError as exc:
        print(f"coordinatord: cannot prepare state dir {settings.state_dir}: {exc}", flush=True)
        return 1
    try:
        anyio.run(serve, settings)
        # Stopping is under way: a second SIGTERM (systemd, an impatient Ctrl-C) must not turn
        # a clean exit into a kill while the interpreter winds down.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except (CoordinatordError, BaseExceptionGroup) as raised:
        # Start-up errors can surface wrapped in a task group's exception group.
        error = _coordinatord_error(raised)
        if error is None:
            raise
        log.error("daemon_failed", error=str(error))
        if not logs.console_enabled():
            print(f"coordinatord: {error}", flush=True)
        # 2 for settings, as for invalid values: a supervisor should not retry those.
        return 2 if isinstance(error, ConfigError) else 1
    return 0


def _coordinatord_error(raised: BaseException) -> CoordinatordError | None:
    if isinstance(raised, CoordinatordError):
        return raised
    if isinstance(raised, BaseExceptionGroup):
        for inner in raised.exceptions:
            found = _coordinatord_error(inner)
            if found is not None:
                return found
    return None


def _prepare_state_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)


async def serve(settings: Settings, *, stop: anyio.Event | None = None) -> None:
    """Serve until SIGTERM/SIGINT (or until ``stop`` is set, for embedding in tests)."""
    started = time.monotonic()
    # Take over SIGTERM/SIGINT before anything starts, so that a signal arriving during
    # start-up becomes a clean stop rather than a default-action kill.
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        await _serve(settings, signals, stop, started)
    log.info("daemon_stopped", uptime_s=round(time.monotonic() - started, 1))


async def _serve(
    settings: Settings, signals: AsyncIterator[int], stop: anyio.Event | None, started: float
) -> None:
    claim = SocketClaim(settings.socket)
    claim.acquire()
    state_lock = None
    try:
        # Two daemons on one state dir would run two servers on one AOF file.
        state_lock = hold_lock(
            settings.state_dir / "daemon.lock",
            lambda owner: (
                f"another coordinatord daemon (pid {owner}) uses the state dir {settings.state_dir}"
            ),
        )
        async with open_store(settings) as store, anyio.create_task_group() as background:
            app = App(settings, store)
            connections = ConnectionServer(app, build_server(app))
            jobs = Jobs(app, app.projects)
            register_all(jobs, settings.jobs)
            started_at = time.time()
            status = DaemonStatus(app, connections, jobs, started_at=started_at)
            app.control_handlers.update(status.control_handlers())
            app.control_handlers.update(control_sessions.handlers(app, jobs))
            app.control_handlers.update(control_projects.handlers(app, connections.describe))
            app.control_handlers.update(control_overview.handlers(app, connections.describe, started_at))
            background.start_soon(app.activity.run)
            if settings.jobs.enabled:
                background.start_soon(jobs.run)
            async with listening(claim) as listener, anyio.create_task_group() as conn_tg:
                conn_tg.start_soon(connections.accept_forever, listener, conn_tg)
                log.info(
                    "daemon_ready",
                    version=__version__,
                    pid=os.getpid(),
                    socket=str(settings.socket),
                    backend=store.name,
                    startup_ms=round((time.monotonic() - started) * 1000, 1),
                )
                if not logs.console_enabled():
                    # The log line above went to the file only: say it once where people look
                    # (a terminal started with console logging off, the journal, autostart.log).
                    _print_ready(ready_line(str(settings.socket), store.name, os.getpid()))
                _notify_systemd("READY=1")
                _freeze_startup_heap()
                reason = await _wait_for_stop(signals, stop)
                _notify_systemd("STOPPING=1")
                log.info("daemon_stopping", reason=reason, in_flight=app.in_flight.count)
                await listener.aclose()
                with anyio.move_on_after(settings.server.drain_timeout_s) as drain:
                    await app.in_flight.wait_idle()
                if drain.cancelled_caught:
                    log.warning("drain_timed_out", in_flight=app.in_flight.count)
                with anyio.move_on_after(CLOSE_TIMEOUT_S):
                    await connections.close_all()
                conn_tg.cancel_scope.cancel()
            # After the connections: the activity log's last flush holds their last calls.
            background.cancel_scope.cancel()
    finally:
        claim.release()
        if state_lock is not None:
            state_lock.close()


async def _wait_for_stop(signals: AsyncIterator[int], stop: anyio.Event | None) -> str:
    reason = "stop_requested"
    async with anyio.create_task_group() as tg:

        async def on_signal() -> None:
            nonlocal reason
            async for signum in signals:
                reason = signal.Signals(signum).name
                break
            tg.cancel_scope.cancel()

        tg.start_soon(on_signal)
        if stop is not None:
            await stop.wait()
            tg.cancel_scope.cancel()
    return reason


def ready_line(socket_path: str, backend: str, pid: int) -> str:
    """What ``serve`` prints on stderr once the socket accepts (the backend's name has its
    password masked, as in every message)."""
    return f"coordinatord {__version__} ready: socket {socket_path}, backend {backend}, pid {pid}"


def _print_ready(line: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # no stderr, or a closed one: nothing to tell
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def _freeze_startup_heap() -> None:
    """Move everything allocated so far (modules, the SDK's and pydantic's schemas: most of the
    heap) out of the garbage collector's reach. A full collection otherwise walks all of it and
    stalls the event loop 50-60 ms, which a busy job triggers every few seconds; measured with
    bench/jobs_bench.py, this was the longest wait any tool call saw during a job."""
    gc.collect()
    gc.freeze()


def _notify_systemd(state: str) -> None:
    """sd_notify without libsystemd: one datagram to $NOTIFY_SOCKET, when systemd set it."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(state.encode(), address)
        except OSError as exc:
            log.warning("systemd_notify_failed", error=str(exc))
