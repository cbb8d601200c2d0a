"""Starting the daemon when no daemon answers: once, detached, whoever asks first.

Several shims may find no daemon at the same moment (an editor opening with four agents). Each
tries an exclusive ``flock`` on ``<state_dir>/autostart.lock`` (in the state dir, beside
``autostart.log``, rather than next to the socket, where it would outlive every stop); the one
that gets it starts
``coordinatord serve`` and holds the lock until that daemon answers or exits, the others see the
lock taken and only wait for the socket. Even if two starts raced past this lock (it is only an
optimisation: a shim killed while starting frees it), the daemon's own lock on the socket lets
one daemon serve and makes the other exit.

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

IDLE, STARTING, OTHERS_STARTING, FAILED = range(4)

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
        self.by_systemd = False

    @property
    def lock_path(self) -> Path:
        return self._config.state_dir / "autostart.lock"

    def may_start(self, now: float) -> bool:
        """Whether a start could be tried now (not one under way, nor one that just failed)."""
        if self.state == FAILED and now - self._failed_at < RETRY_AFTER_FAILURE_S:
            return False
        return self.state in (IDLE, FAILED)

    def start(self, now: float) -> bool:
        """Start the daemon unless another shim is starting one. True when this shim started it."""
        if not self._take_lock():
            self.state = OTHERS_STARTING
            return False
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
                self._fail(now, self._exit_message(code))
            elif now - self._started_at > GIVE_UP_S:
                self._release()
                self.state = IDLE
        elif self.state == OTHERS_STARTING and self._take_lock():
            self._release()
            self.state = IDLE

    def connected(self) -> None:
        """A daemon answers: whatever start was under way is over."""
        self._release()
        if self.state != IDLE:
            self.state = IDLE
            self.failure = None

    def close(self) -> None:
        """The shim is ending: let another shim start a daemon if this one's never answered."""
        self._release()

    def _fail(self, now: float, message: str) -> None:
        self._release()
        self.state = FAILED
        self.failure = message
        self._failed_at = now

    def _exit_message(self, code: int) -> str:
        reason = _last_line(self._config.autostart_log)
        said = f": {reason}" if reason else ""
        return (
            f"the daemon this shim started exited with status {code}{said}; see {self._config.autostart_log}"
        )

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
            handle = open(self.lock_path, "a")  # noqa: SIM115 - held while the start is under way
        except OSError:
            return True  # no lock to be had: start anyway; the daemon's socket lock decides
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._lock = handle
        return True

    def _release(self) -> None:
        if self._lock is not None:
            with contextlib.suppress(OSError):
                self._lock.close()
            self._lock = None


def _last_line(path: Path, limit: int = 8192) -> str:
    """The last non-empty line of the log, which is where a failed start says why."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - limit))
            tail = handle.read().decode(errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip() and not line.startswith("---")]
    return lines[-1][:500] if lines else ""
