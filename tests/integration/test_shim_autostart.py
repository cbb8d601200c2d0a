"""How the shim starts a daemon: through the user's systemd unit when there is one, else itself.

systemd itself does not run here, so ``systemctl`` is a script of the test's on PATH that
records how it was called and answers as told; the daemon the fallback starts is the real one.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinatord.shim.autostart import FAILED, IDLE, STARTING, Starter
from coordinatord.shim.config import ShimConfig
from tests.support import daemons_serving, short_tmpdir

FAKE_SYSTEMCTL = """#!/bin/sh
echo "$XDG_RUNTIME_DIR $*" >> "{record}"
exit {code}
"""


@pytest.fixture
def root(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A HOME with the systemd unit installed, and a bin dir first on PATH."""
    path = short_tmpdir()
    unit = path / ".config" / "systemd" / "user" / "coordinatord.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/bin/false\n")
    (path / "bin").mkdir()
    monkeypatch.setenv("HOME", str(path))
    monkeypatch.setenv("PATH", f"{path / 'bin'}:{os.environ['PATH']}")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def fake_systemctl(root: Path, code: int) -> Path:
    record = root / "systemctl.calls"
    script = root / "bin" / "systemctl"
    script.write_text(FAKE_SYSTEMCTL.format(record=record, code=code))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return record


def config(root: Path, default_socket: bool) -> ShimConfig:
    # socket_is_default stands for "the socket the unit serves on": the test cannot use the
    # machine's real default socket.
    return ShimConfig(socket=root / "c.sock", state_dir=root / "state", socket_is_default=default_socket)


def test_the_unit_is_started_when_it_exists(root: Path) -> None:
    """With the unit installed, systemd is asked to start it (with the runtime dir an editor
    strips), and the shim starts nothing itself."""
    record = fake_systemctl(root, 0)
    starter = Starter(config(root, default_socket=True))
    assert starter.start(now=0.0)
    assert (starter.state, starter.by_systemd) == (STARTING, True)
    assert record.read_text() == f"/run/user/{os.getuid()} --user --no-block start coordinatord.service\n"
    assert "journalctl --user -u coordinatord.service" in starter.starting_hint()
    assert daemons_serving(root / "c.sock") == []
    starter.connected()
    assert starter.state == IDLE
    starter.close()


def test_without_a_user_manager_the_shim_starts_the_daemon_itself(root: Path) -> None:
    """systemctl fails (no user bus, as on WSL without systemd): the shim's own start follows."""
    record = fake_systemctl(root, 1)
    starter = Starter(config(root, default_socket=True))
    try:
        assert starter.start(now=0.0)
        assert (starter.state, starter.by_systemd) == (STARTING, False)
        assert record.exists()
        log = (root / "state" / "autostart.log").read_text()
        assert "systemctl --user --no-block start coordinatord.service" in log
        assert "--- started by coordinatord shim" in log
    finally:
        stop_child(starter)


def stop_child(starter: Starter) -> None:
    """The daemon a Starter started is its child: SIGTERM it and wait."""
    starter.close()
    if starter.child is not None:
        starter.child.terminate()
        starter.child.wait(timeout=30)


def test_a_shim_on_another_socket_never_asks_systemd(root: Path) -> None:
    """The unit serves the default socket: a shim given another one starts its own daemon, and
    a second shim meanwhile sees the start lock taken and starts nothing."""
    record = fake_systemctl(root, 0)
    first, second = Starter(config(root, False)), Starter(config(root, False))
    try:
        assert first.start(now=0.0) and not first.by_systemd
        assert not record.exists()
        assert not second.start(now=0.0)
        second.poll(now=0.1)
        assert second.state != IDLE  # still being started by the first
        # The start lock lives in the state dir, not beside the socket, where it would stay
        # behind after every stop.
        assert first.lock_path == root / "state" / "autostart.lock"
        assert not (root / "c.sock.start.lock").exists()
    finally:
        second.close()
        stop_child(first)


def test_a_start_that_exits_says_why(root: Path) -> None:
    """The daemon exits at once (here: a state dir that cannot be made): FAILED, with its exit
    status and last words, and no new start for a while."""
    blocker = root / "state-is-a-file"
    blocker.write_text("")
    starter = Starter(ShimConfig(socket=root / "c.sock", state_dir=blocker / "sub"))
    assert not starter.start(now=0.0)  # the log itself cannot be written there
    assert starter.state == FAILED and "cannot write the auto-start log" in (starter.failure or "")
    assert not starter.may_start(now=1.0)
    assert starter.may_start(now=60.0)
