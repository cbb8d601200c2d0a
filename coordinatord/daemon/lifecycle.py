"""The daemon's lifecycle: claim the socket, open the store, serve, drain, stop.

Components start in order as nested context managers and stop in reverse; SIGTERM/SIGINT (or
the ``shutdown`` control command, ``coordinatord stop``) stop accepting connections, let
in-flight calls finish (bounded by ``server.drain_timeout_s``) and exit 0.

While it serves, it keeps its socket path its own (:mod:`coordinatord.daemon.socket_watch`): a
socket file removed or replaced under it is bound again within ``server.socket_check_s``, or,
when that cannot be done, the daemon stops cleanly (reason ``socket_lost``) so that the next shim
starts one.

Under systemd (see :mod:`coordinatord.systemd`) the daemon serves the socket systemd passed
when socket-activated, says ``READY=1``, ``STOPPING=1`` and ``STATUS=`` lines, and sends
``WATCHDOG=1`` while its event loop and its backend answer. Exit statuses: 0 after a clean stop,
:data:`~coordinatord.errors.EXIT_INVALID_SETTINGS` (2), :data:`~coordinatord.errors.EXIT_ALREADY_RUNNING`
(10: another daemon owns the socket or the state dir), 1 for any other failure.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import structlog

from coordinatord import __version__, heap, logs, paths, private_folder, systemd
from coordinatord.app import App
from coordinatord.clock import BackendClock
from coordinatord.control.handlers import build_commands
from coordinatord.daemon.claim import SocketClaim, hold_lock, listening, reach_or_stop
from coordinatord.daemon.socket_watch import ServedSocket
from coordinatord.daemon_locks import state_lock_path
from coordinatord.errors import (
    EXIT_ALREADY_RUNNING,
    EXIT_FAILURE,
    EXIT_INVALID_SETTINGS,
    EXIT_OK,
    AlreadyRunningError,
    BackendError,
    ConfigError,
    CoordinatordError,
    UnsafeFolderError,
)
from coordinatord.jobs import Jobs
from coordinatord.jobs.schedule import register_all
from coordinatord.server.connections import OpenConnections
from coordinatord.server.front_door import ConnectionServer
from coordinatord.server.in_flight import InFlight
from coordinatord.server.mcp_session import build_server
from coordinatord.settings import Settings
from coordinatord.store import Store, open_store
from coordinatord.tools import build_registry

log = structlog.get_logger("coordinatord.daemon")

CLOSE_TIMEOUT_S = 2.0
"""After draining, how long connections get to write their last bytes and close."""


def run_daemon(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT. Returns the process exit code."""
    try:
        _prepare_state_dir(settings.state_dir)
        logs.configure(settings.logging, settings.log_file)
    except UnsafeFolderError as exc:
        print(f"coordinatord: {exc}", flush=True)  # no log yet: it would go in that folder
        return EXIT_INVALID_SETTINGS
    except OSError as exc:
        print(f"coordinatord: cannot prepare state dir {settings.state_dir}: {exc}", flush=True)
        return EXIT_FAILURE
    heap.use_one_arena()  # before any worker thread: see coordinatord.heap
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
        code = exit_code(error)
        log.error("daemon_failed", error=str(error), exit_status=code)
        systemd.notify(systemd.status(f"failed: {error}"))
        if not logs.console_enabled():
            print(f"coordinatord: {error}", flush=True)
        return code
    return EXIT_OK


def exit_code(error: CoordinatordError) -> int:
    """2 for settings, 10 for another daemon in the way (a supervisor should retry neither,
    see the unit's ``RestartPreventExitStatus=``), 1 for the rest."""
    if isinstance(error, ConfigError):
        return EXIT_INVALID_SETTINGS
    if isinstance(error, AlreadyRunningError):
        return EXIT_ALREADY_RUNNING
    return EXIT_FAILURE


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
    """Create the state dir (0700), or check that the one there is private to us: it holds the
    AOF with every value, the log and the daemon's lock."""
    try:
        private_folder.ensure(path)
    except UnsafeFolderError as exc:
        raise UnsafeFolderError(
            f"refusing the state dir: {exc}; it holds the embedded Valkey's data and the log, which "
            f"another user could read or replace. Fix: {private_folder.remedy(path)}; or give "
            "another one (--state-dir, COORDINATORD_STATE_DIR or the config file's state_dir)"
        ) from None


async def serve(settings: Settings, *, stop: anyio.Event | None = None) -> None:
    """Serve until SIGTERM/SIGINT (or until ``stop`` is set, for embedding in tests)."""
    started = time.monotonic()
    # Take over SIGTERM/SIGINT before anything starts, so that a signal arriving during
    # start-up becomes a clean stop rather than a default-action kill.
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        await _serve(settings, signals, stop, started)
    log.info("daemon_stopped", uptime_s=round(time.monotonic() - started, 1))


def _inherited_socket(settings: Settings) -> Any:
    """The listening socket systemd passed (socket activation), checked against the socket this
    daemon is configured for; None when there is none."""
    try:
        inherited = systemd.inherited_listener()
    except systemd.ActivationError as exc:
        raise ConfigError(f"{exc}; reinstall the units with `coordinatord service install`") from None
    if inherited is None:
        return None
    bound = Path(inherited.getsockname())
    if os.path.realpath(bound) != os.path.realpath(settings.socket):
        inherited.detach()  # systemd's descriptor: ours to leave alone
        raise ConfigError(
            f"systemd passed a socket on {bound}, but this daemon's socket is {settings.socket} "
            "(--socket, COORDINATORD_SOCKET or the config file's socket); shims look there, so "
            "render the socket unit for it again: coordinatord service install"
        )
    return inherited


async def _serve(
    settings: Settings, signals: AsyncIterator[int], stop: anyio.Event | None, started: float
) -> None:
    watchdog_s = systemd.watchdog_interval_s()
    claim = SocketClaim(settings.socket, inherited=_inherited_socket(settings))
    # Before the claim creates the usual folder, which would change the answer.
    default = paths.default_socket()
    socket_folder = paths.socket_note(settings.socket, default)
    fallback = socket_folder if settings.socket == default.path and default.unsafe else None
    claim.acquire()
    state_lock = None
    try:
        # Two daemons on one state dir would run two servers on one AOF file.
        state_lock = hold_lock(
            state_lock_path(settings.state_dir),
            lambda owner: (
                f"another coordinatord daemon (pid {owner.pid}) uses the state dir "
                f"{settings.state_dir}"
                + (f", serving on {owner.socket}" if owner.socket else "")
                + "; "
                + (
                    reach_or_stop(Path(owner.socket))
                    if owner.socket
                    else f"stop it with `kill -TERM {owner.pid}`"
                )
                + ", or give this one another --state-dir"
            ),
            socket_path=settings.socket,
        )
        async with open_store(settings) as store, anyio.create_task_group() as background:
            # The wiring, bottom up: each part is given at construction all it uses.
            # "Now" is the backend's time for every service and job (see coordinatord.clock).
            clock = BackendClock(store.time, settings.daemon.max_clock_skew_s, backend=store.name)
            with contextlib.suppress(BackendError):  # not there yet: the clock reads it again
                await clock.sample()
            app = App(settings, store, clock, registry=build_registry())
            in_flight = InFlight()
            jobs = Jobs(app, app.projects, in_flight)
            register_all(jobs, settings.jobs)
            service = {
                "unit": systemd.own_unit(),
                "socket_activated": claim.inherited is not None,
                "watchdog_s": watchdog_s,
            }
            started_at = time.time()
            shutdown = anyio.Event()
            open_connections = OpenConnections()
            control = build_commands(
                app,
                jobs,
                open_connections.describe,
                started_at=started_at,
                service=service,
                shutdown=shutdown,
                socket_folder={"note": socket_folder, "fallback": fallback is not None},
            )
            connections = ConnectionServer(app, build_server(app), in_flight, open_connections, control)
            background.start_soon(app.activity.run)
            background.start_soon(clock.run)
            # Every daemon renews its own connections' presence records (no leader).
            background.start_soon(app.presence_leases.run)
            if settings.jobs.enabled:
                background.start_soon(jobs.run)
            async with listening(claim) as listener, anyio.create_task_group() as conn_tg:

                async def accept(on: anyio.abc.SocketListener) -> None:
                    await connections.accept_forever(on, conn_tg)

                served = ServedSocket(claim, listener, accept, conn_tg)
                conn_tg.start_soon(accept, listener)
                if claim.inherited is None:  # systemd's socket file is systemd's to keep
                    conn_tg.start_soon(served.watch, settings.server.socket_check_s)
                log.info(
                    "daemon_ready",
                    version=__version__,
                    pid=os.getpid(),
                    socket=str(settings.socket),
                    socket_folder=socket_folder,
                    socket_activated=claim.inherited is not None,
                    watchdog_s=watchdog_s,
                    backend=store.name,
                    startup_ms=round((time.monotonic() - started) * 1000, 1),
                )
                if not logs.console_enabled():
                    # The log line above went to the file only: say it once where people look
                    # (a terminal started with console logging off, the journal, autostart.log).
                    _print_ready(ready_line(str(settings.socket), store.name, os.getpid(), fallback))
                serving = f"serving on {settings.socket}, backend {store.name}"
                systemd.notify("READY=1\n" + systemd.status(serving))
                if watchdog_s is not None:
                    background.start_soon(_watchdog, store, watchdog_s)
                _freeze_startup_heap()
                reason = await _wait_for_stop(signals, stop, shutdown, served.lost)
                stopping = f"stopping ({reason}), {in_flight.count} calls in flight"
                systemd.notify("STOPPING=1\n" + systemd.status(stopping))
                log.info("daemon_stopping", reason=reason, in_flight=in_flight.count)
                await served.aclose()
                with anyio.move_on_after(settings.server.drain_timeout_s) as drain:
                    await in_flight.wait_idle()
                if drain.cancelled_caught:
                    log.warning("drain_timed_out", in_flight=in_flight.count)
                with anyio.move_on_after(CLOSE_TIMEOUT_S):
                    await open_connections.close_all()
                conn_tg.cancel_scope.cancel()
            # After the connections: the activity log's last flush holds their last calls.
            background.cancel_scope.cancel()
            if not settings.jobs.enabled:
                # jobs.run, which gives its leases back as it ends, never ran; run_now may
                # still have taken some (coordinatord archive, run_job).
                with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                    await jobs.resign_all()
    finally:
        claim.release()
        if state_lock is not None:
            state_lock.close()


async def _watchdog(store: Store, interval_s: float) -> None:
    """``WATCHDOG=1`` every half interval, each only after a store ping came back within a
    quarter of it: a daemon whose event loop is stuck sends nothing, and one whose backend hangs
    (a ping that times out: a stopped or wedged server) skips the keep-alive, so that systemd
    restarts it after ``WatchdogSec``. A backend that answers with an error, or refuses the
    connection at once, is not a hang: a restart would not bring it back, only cut every editor's
    calls in flight, so the keep-alive goes on and ``status``/``doctor`` report the backend.
    Each skip is logged, and said in ``STATUS=``."""
    period, bound = interval_s / 2, interval_s / 4
    failing = False
    while True:
        tick = time.monotonic()
        error: str | None = None
        with anyio.move_on_after(bound) as scope:
            try:
                await store.ping()
            except BackendError as exc:
                if exc.kind == "timeout":
                    error = str(exc)
                else:
                    log.debug("watchdog_backend_error", error=str(exc))
        if scope.cancelled_caught:
            error = f"backend {store.name} did not answer a ping within {bound:g} s"
        if error is None:
            systemd.notify("WATCHDOG=1" + ("\nSTATUS=backend answers again" if failing else ""))
            failing = False
        else:
            log.warning("watchdog_keepalive_skipped", error=error, watchdog_s=interval_s)
            systemd.notify(systemd.status(f"watchdog keep-alive skipped: {error}"))
            failing = True
        await anyio.sleep(max(0.0, period - (time.monotonic() - tick)))


async def _wait_for_stop(
    signals: AsyncIterator[int], stop: anyio.Event | None, shutdown: anyio.Event, socket_lost: anyio.Event
) -> str:
    reason = "stop_requested"
    async with anyio.create_task_group() as tg:

        async def on_shutdown() -> None:
            nonlocal reason
            await shutdown.wait()
            reason = "shutdown_command"
            tg.cancel_scope.cancel()

        async def on_socket_lost() -> None:
            nonlocal reason
            await socket_lost.wait()
            reason = "socket_lost"  # gone, and it could not be bound again (logged)
            tg.cancel_scope.cancel()

        async def on_signal() -> None:
            nonlocal reason
            async for signum in signals:
                reason = signal.Signals(signum).name
                break
            tg.cancel_scope.cancel()

        tg.start_soon(on_signal)
        tg.start_soon(on_shutdown)
        tg.start_soon(on_socket_lost)
        if stop is not None:
            await stop.wait()
            tg.cancel_scope.cancel()
    return reason


def ready_line(socket_path: str, backend: str, pid: int, fallback: str | None = None) -> str:
    """What ``serve`` prints on stderr once the socket accepts (the backend's name has its
    password masked, as in every message). ``fallback``: why the socket is in the default's
    fallback folder, the one case where it is not where a person would look."""
    why = f" ({fallback})" if fallback else ""
    return f"coordinatord {__version__} ready: socket {socket_path}{why}, backend {backend}, pid {pid}"


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
