"""Starting the daemon when no daemon answers: once, detached, whoever asks first.

Several shims may find no daemon at the same moment (an editor opening with four agents). Each
tries an exclusive ``flock`` on ``<state_dir>/autostart.lock`` (in the state dir, beside
``autostart.log``, rather than next to the socket, where it would outlive every stop); the one
that gets it starts
``coordinatord serve`` and holds the lock until that daemon answers or exits, the others see the
lock taken and only wait for the socket. Even if two starts raced past this lock (it is only an
optimisation: a shim killed while starting frees it), the daemon's own lock on the socket lets
one daemon serve and makes the other exit. Nor does a shim start a daemon while one holds the
socket's lock without answering (:mod:`coordinatord.daemon_locks`): it is starting, or its
socket file was removed and it is binding a new one; the shim waits for it (:data:`HELD`).

A start that ends before the daemon answers is either final or passing. A daemon that exits
with status 1 or 2 said why (a bad setting, a state dir it cannot use): starting it again would
fail the same way, so the waiting calls fail at once with its words (:data:`FAILED`), and no new
start is tried for :data:`RETRY_AFTER_FAILURE_S`. One killed by a signal, or that stopped
cleanly or found another daemon in its place (status 0 or 10), is passing: the calls go on
waiting, and the shim's backoff (:mod:`coordinatord.shim.relay`) decides when to try again. Its
words are read from what this start appended to ``autostart.log``, never an earlier daemon's.

The daemon is started detached: its own session (no controlling terminal, no signals from the
editor's process group), stdin from ``/dev/null``, stdout and stderr appended to
``<state_dir>/autostart.log``, working directory ``/``. It runs with the shim's environment,
which an MCP client has stripped, so it takes its backend from the config file; ``--socket``,
``--state-dir`` and ``--config`` are passed so that it serves exactly where this shim looks.

When the user has installed the systemd unit (``~/.config/systemd/user/coordinatord.service``)
and this shim looks for the default socket, the unit is started instead (``systemctl --user
--no-block start``): a daemon of the shim's own would keep systemd's from starting, and the
unit's would then fail until it gave up. If ``systemctl`` cannot do it (no user manager, as on
WSL without systemd), the shim starts the daemon itself after all. With the socket unit
(``coordinatord.socket``, from ``coordinatord service install``) active, nothing of this runs:
systemd accepts the connection and starts the daemon itself.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from coordinatord.shim.config import ShimConfig

# No typing at run time: see TYPE_CHECKING in coordinatord/cli.py.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any

IDLE, STARTING, OTHERS_STARTING, FAILED, HELD = range(5)
"""HELD: a daemon holds the socket's lock but does not answer (starting, or binding anew)."""

FINAL_EXIT_STATUSES = frozenset((1, 2))
"""The daemon's exit statuses for failures a new start would repeat (see lifecycle.exit_code)."""

UNIT = "coordinatord.service"

_SYSTEMD_VARS = frozenset(
    ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID")
)
"""An editor run under systemd must not hand its own unit's notify socket, descriptors or
watchdog to the daemon it starts."""

RETRY_AFTER_FAILURE_S = 5.0
"""After a start that failed, requests fail at once (with its reason) for this long."""

GIVE_UP_S = 60.0
"""A daemon that neither answers nor exits within this long no longer holds the start lock."""


class Starter:
    """One shim's part in starting the daemon. Not thread-safe (the shim has one thread)."""

    def __init__(self, config: ShimConfig) -> None:
        self._config = config
        self.state = IDLE
        self.failure: str | None = None
        self._failed_at = 0.0
        self._lock: IO[str] | None = None
        self.child: Any = None
        """The daemon this shim started (a ``subprocess.Popen``; the module is imported only then)."""
        self._started_at = 0.0
        self._log_offset = 0
        self.by_systemd = False
        self.holder: Any = None
        """With :data:`HELD`: the :class:`~coordinatord.daemon_locks.Holder` of the socket's lock."""
        self.starts = 0
        """Daemons this shim started since it last reached one."""
        self.failed_starts = 0
        """Starts (this shim's or another's) that ended without a daemon, since one last answered."""
        self._others_ended = False
        self._seen_start: str | None = None

    @property
    def lock_path(self) -> Path:
        return self._config.state_dir / "autostart.lock"

    def may_start(self, now: float) -> bool:
        """Whether a start could be tried now (not one under way, nor one that just failed)."""
        if self.state == FAILED and now - self._failed_at < RETRY_AFTER_FAILURE_S:
            return False
        return self.state in (IDLE, FAILED, HELD)

    def start(self, now: float) -> bool:
        """Start the daemon unless another shim is starting one. True when this shim started it."""
        if not self._take_lock():
            self.state = OTHERS_STARTING
            return False
        from coordinatord import daemon_locks

        holder = daemon_locks.daemon_holding(self._config.socket, self._config.state_dir)
        if holder is not None:
            self._release()  # nothing to start: the daemon there is starting, or binding anew
            self.state = HELD
            self.holder = holder
            return False
        self.holder = None
        self._mark_start()
        import subprocess  # ~10 ms: paid only by the shim that starts the daemon

        log_path = self._config.autostart_log
        try:
            self._config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            log = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        except OSError as exc:
            self._fail(now, f"cannot write the auto-start log {log_path}: {exc.strerror or exc}")
            return False
        env = {k: v for k, v in os.environ.items() if k not in _SYSTEMD_VARS}
        try:
            with log:
                os.chmod(log_path, 0o600)
                self._log_offset = os.fstat(log.fileno()).st_size  # what this start writes follows
                self.starts += 1
                if self._start_unit(subprocess, env, log):
                    self.state = STARTING
                    self._started_at = now
                    self.by_systemd = True
                    return True
                log.write(
                    f"--- started by coordinatord shim (pid {os.getpid()}): {self.command()}\n".encode()
                )
                log.flush()
                self.child = subprocess.Popen(
                    self.argv(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    cwd="/",
                    env=env,
                    start_new_session=True,
                )
        except OSError as exc:
            self._fail(now, f"could not run {self.command()}: {exc.strerror or exc}")
            return False
        self.state = STARTING
        self._started_at = now
        self.by_systemd = False
        return True

    def unit_file(self) -> Path | None:
        """The user's systemd unit, when it exists and would serve where this shim looks."""
        if not self._config.socket_is_default:
            return None  # the unit serves on the default socket, not on this one
        unit = Path.home() / ".config" / "systemd" / "user" / UNIT
        return unit if unit.is_file() else None

    def _start_unit(self, subprocess: Any, env: dict[str, str], log: IO[bytes]) -> bool:
        """``systemctl --user --no-block start`` the unit; whether systemd took the job."""
        if self.unit_file() is None:
            return False
        # systemctl finds the user manager through XDG_RUNTIME_DIR, which editors strip.
        env = {**env, "XDG_RUNTIME_DIR": f"/run/user/{os.getuid()}"}
        command = ["systemctl", "--user", "--no-block", "start", UNIT]
        log.write(f"--- coordinatord shim (pid {os.getpid()}): {' '.join(command)}\n".encode())
        log.flush()
        try:
            done = subprocess.run(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return False
        return bool(done.returncode == 0)

    def argv(self) -> list[str]:
        config = self._config
        argv = [sys.executable, "-m", "coordinatord", "serve", "--socket", str(config.socket)]
        argv += ["--state-dir", str(config.state_dir)]
        if config.config_file is not None:
            argv += ["--config", str(config.config_file)]
        return argv

    def command(self) -> str:
        return " ".join(self.argv())

    def poll(self, now: float) -> None:
        """Notice that the daemon this shim started has exited, or that another shim's start is
        over (its lock is free again)."""
        if self.state == STARTING:
            code = None if self.by_systemd else self.child.poll()
            if code is not None:
                self.failed_starts += 1
                if code in FINAL_EXIT_STATUSES:
                    self._fail(now, self._exit_message(code))
                else:  # killed, or stopped: the calls wait, and the backoff tries again
                    self._release()
                    self.state = IDLE
                    self.failure = self._exit_message(code)
            elif now - self._started_at > GIVE_UP_S:
                self._release()
                self.state = IDLE
        elif self.state == OTHERS_STARTING and self._take_lock():
            self._release()
            self.state = IDLE
            self._others_ended = True  # a failure if the next connect finds no daemon

    def connect_failed(self) -> None:
        """No daemon answered a connect: a start by another shim that just ended has failed."""
        if self._others_ended:
            self._others_ended = False
            self.failed_starts += 1

    def connected(self) -> None:
        """A daemon answers: whatever start was under way is over."""
        self._release()
        self.state = IDLE
        self.failure = None
        self.holder = None
        self.starts = self.failed_starts = 0
        self._others_ended = False
        self._seen_start = None

    def close(self) -> None:
        """The shim is ending: let another shim start a daemon if this one's never answered."""
        self._release()

    def _fail(self, now: float, message: str) -> None:
        self._release()
        self.state = FAILED
        self.failure = message
        self._failed_at = now

    def _exit_message(self, code: int) -> str:
        log = self._config.autostart_log
        reason = _last_line(log, since=self._log_offset)
        if code < 0:
            import signal

            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with status {code}"
        said = f": {reason}" if reason else " before it wrote a word"
        return f"the daemon this shim started (pid {self.child.pid}) {how}{said}; see {log}"

    def starting_hint(self) -> str:
        """Where to look when a start under way does not answer."""
        if self.by_systemd:
            return f"journalctl --user -u {UNIT}"
        return str(self._config.autostart_log)

    def _take_lock(self) -> bool:
        if self._lock is not None:
            return True
        import fcntl

        try:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            handle = open(self.lock_path, "a+")  # noqa: SIM115 - held while the start is under way
        except OSError:
            return True  # no lock to be had: start anyway; the daemon's socket lock decides
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            with contextlib.suppress(OSError):
                handle.seek(0)
                self._note_start(handle.read(100))
            handle.close()
            return False
        self._lock = handle
        self._seen_start = None
        return True

    def _mark_start(self) -> None:
        """Write a token of this start in the lock, by which the shims waiting on it tell one
        start from the next (a start that ended and was followed by another at once)."""
        if self._lock is not None:
            with contextlib.suppress(OSError):
                self._lock.seek(0)
                self._lock.truncate()
                self._lock.write(f"{os.getpid()} {os.urandom(4).hex()}\n")
                self._lock.flush()

    def _note_start(self, token: str) -> None:
        """Another shim's start is under way: if it is not the one seen last time, that one
        ended without a daemon this shim reached."""
        if self._seen_start is not None and token and token != self._seen_start:
            self.failed_starts += 1
        self._seen_start = token or self._seen_start

    def _release(self) -> None:
        if self._lock is not None:
            with contextlib.suppress(OSError):
                self._lock.close()
            self._lock = None


def _last_line(path: Path, since: int = 0, limit: int = 8192) -> str:
    """The last non-empty line the log got after offset ``since`` (where this start's output
    begins: an earlier daemon's lines are not this one's reason), which is where a failed start
    says why."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(since, size - limit))
            tail = handle.read().decode(errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip() and not line.startswith("---")]
    return lines[-1][:500] if lines else ""
