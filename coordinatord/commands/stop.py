"""``coordinatord stop [--socket PATH] [--timeout S]``: stop the running daemon, and wait until
it has.

Under the systemd units (``coordinatord service install``) both are stopped with ``systemctl
--user stop coordinatord.socket coordinatord.service``: stopping only the service would leave
systemd listening, and the next shim's connection would start the daemon again (which is what
``systemctl --user restart coordinatord.service`` is for). Otherwise the daemon is asked over
its socket (control command ``shutdown``) and stops as on SIGTERM: calls in flight finish
first (``server.drain_timeout_s``). When nothing answers on the socket but a daemon holds its
lock (the socket file was removed or replaced, or the daemon is still starting), that daemon is
found from the lock (:mod:`coordinatord.daemon_locks`), checked to be the process holding it,
and sent SIGTERM.

Exit status: 0 stopped, 1 none was running, 3 it did not stop (the message says why).
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys
import time
from pathlib import Path

from coordinatord import control, daemon_locks, paths, systemd
from coordinatord.errors import DaemonError

DEFAULT_TIMEOUT_S = 40.0
"""Drain (10 s), closing the connections (2 s), the embedded Valkey's stop (10 s), and some."""

EXIT_STOPPED, EXIT_NONE_RUNNING, EXIT_NOT_STOPPED = 0, 1, 3


def main(args: argparse.Namespace) -> int:
    socket_path = paths.shim_socket_path(args.socket)
    return stop(socket_path, args.timeout)


def _say(text: str) -> None:
    print(text, flush=True)


def _warn(text: str) -> None:
    print(f"coordinatord: {text}", file=sys.stderr, flush=True)


def stop(socket_path: Path, timeout: float, run: systemd.Runner = systemd.run_command) -> int:
    if systemd.unit_socket_path() == socket_path:
        state = systemd.unit_state(run=run)
        if state.manager_problem is None and state.running_under_systemd:
            return _stop_units(socket_path, timeout, run)
    started = time.monotonic()
    try:
        reply = control.request(socket_path, "shutdown", timeout=min(timeout, 15.0))
    except control.DaemonNotRunningError:
        holder = daemon_locks.daemon_holding(socket_path, paths.shim_state_dir())
        if holder is not None:
            return _stop_holder(socket_path, holder, timeout)
        _warn(f"no coordinatord daemon answers at {socket_path}: none is running, nothing to stop")
        return EXIT_NONE_RUNNING
    except DaemonError as exc:
        _warn(f"could not ask the daemon at {socket_path} to stop: {exc}")
        return EXIT_NOT_STOPPED
    pid = int(reply["pid"])
    if not _wait_gone(pid, timeout - (time.monotonic() - started)):
        _warn(
            f"the daemon (pid {pid}) on {socket_path} is still stopping after {timeout:g} s (calls "
            f"in flight get server.drain_timeout_s, its embedded Valkey embedded.stop_timeout_s); "
            f"it goes on by itself, or `kill -KILL {pid}` ends it now"
        )
        return EXIT_NOT_STOPPED
    took = time.monotonic() - started
    _say(f"stopped the coordinatord daemon (pid {pid}) on {socket_path} in {took:.1f} s")
    if reply.get("socket_activated") or reply.get("unit") == systemd.SERVICE:
        _say(
            f"it ran under systemd's {systemd.SERVICE}, which systemctl could not reach to stop; "
            f"{systemd.SOCKET} may still listen and start it again on the next connection"
        )
    return EXIT_STOPPED


def _stop_holder(socket_path: Path, holder: daemon_locks.Holder, timeout: float) -> int:
    """SIGTERM the daemon that holds the socket's lock but does not answer on the socket, once
    it is sure that the pid written in the lock is the process holding it."""
    pid = holder.verified_pid()
    if pid is None:
        _warn(
            f"{holder.lock} is held, but not by pid {holder.owner.pid} written in it, so nothing was "
            f"stopped; `fuser -v {holder.lock}` names the process holding it"
        )
        return EXIT_NOT_STOPPED
    started = time.monotonic()
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass  # it ended between the look and the signal
    except PermissionError:
        _warn(f"not allowed to signal pid {pid}, which holds {holder.lock}")
        return EXIT_NOT_STOPPED
    if not _wait_gone(pid, timeout):
        _warn(
            f"the daemon (pid {pid}) holding {holder.lock} is still stopping after {timeout:g} s (one "
            f"still starting stops once its backend answered); `kill -KILL {pid}` ends it now"
        )
        return EXIT_NOT_STOPPED
    took = time.monotonic() - started
    _say(
        f"stopped the coordinatord daemon (pid {pid}), whose socket {socket_path} did not answer "
        f"({daemon_locks.socket_state(socket_path)}), in {took:.1f} s"
    )
    return EXIT_STOPPED


def _stop_units(socket_path: Path, timeout: float, run: systemd.Runner) -> int:
    command = ["systemctl", "--user", "stop", systemd.SOCKET, systemd.SERVICE]
    started = time.monotonic()
    code, said = run(command, timeout)
    if code != 0:
        _warn(f"`{' '.join(command)}` failed (exit status {code}): {said}")
        return EXIT_NOT_STOPPED
    _say(
        f"stopped {systemd.SERVICE} and {systemd.SOCKET} (systemd) on {socket_path} in "
        f"{time.monotonic() - started:.1f} s; a shim that needs the daemon starts them again "
        f"(to restart the daemon alone, keeping the socket: systemctl --user restart {systemd.SERVICE})"
    )
    return EXIT_STOPPED


def _wait_gone(pid: int, timeout: float) -> bool:
    """Whether process ``pid`` (not our child) exits within ``timeout``: a pidfd becomes
    readable when it does; where there is none, its existence is looked at every 50 ms."""
    deadline = time.monotonic() + max(timeout, 0.0)
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    except (OSError, AttributeError):
        pidfd = None
    if pidfd is not None:
        try:
            return bool(select.select([pidfd], [], [], max(timeout, 0.0))[0])
        finally:
            os.close(pidfd)
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        time.sleep(0.05)
    return False
