"""coordinatord.systemd: the notify, activation and watchdog protocols on real sockets, and the
units' state as a (fake) systemctl reports it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from coordinatord import systemd
from tests import fake_systemctl


@pytest.fixture
def tmp(short_tmp: Path) -> Path:
    return short_tmp


def test_notify_sends_one_datagram_to_the_notify_socket(tmp: Path) -> None:
    """A notification is one datagram to NOTIFY_SOCKET carrying the message as given; without the variable,
    or with a socket that is gone, notify reports that it sent nothing."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(str(tmp / "notify"))
        receiver.settimeout(10)
        assert systemd.notify("READY=1\nSTATUS=x", {"NOTIFY_SOCKET": str(tmp / "notify")})
        assert receiver.recv(4096) == b"READY=1\nSTATUS=x"
    assert not systemd.notify("READY=1", {})
    assert not systemd.notify("READY=1", {"NOTIFY_SOCKET": str(tmp / "gone")})


def test_notify_reaches_an_abstract_socket() -> None:
    """A NOTIFY_SOCKET starting with @ is reached as an abstract Unix socket, as systemd may pass it."""
    name = f"coordinatord-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        receiver.settimeout(10)
        assert systemd.notify("WATCHDOG=1", {"NOTIFY_SOCKET": "@" + name})
        assert receiver.recv(4096) == b"WATCHDOG=1"


def test_status_is_one_line() -> None:
    """A multi-line status message becomes a single STATUS= line."""
    assert systemd.status("backend down:\n  refused") == "STATUS=backend down: refused"


def test_watchdog_interval_is_ours_only_and_the_variables_go() -> None:
    """The watchdog interval is read from WATCHDOG_USEC only when WATCHDOG_PID is absent or ours, the
    variables are removed, and zero or unreadable values mean no watchdog."""
    env = {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    assert systemd.watchdog_interval_s(env) == 30.0
    assert env == {}
    assert systemd.watchdog_interval_s({"WATCHDOG_USEC": "2000000"}) == 2.0
    assert systemd.watchdog_interval_s({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}) is None
    assert systemd.watchdog_interval_s({"WATCHDOG_USEC": "0"}) is None
    assert systemd.watchdog_interval_s({"WATCHDOG_USEC": "soon"}) is None
    assert systemd.watchdog_interval_s({}) is None


def test_listen_fds_for_this_pid_with_names_and_the_variables_go() -> None:
    """Sockets passed by systemd are fds from 3 with their names (unknown where none is given), only when
    LISTEN_PID is this process; the variables are removed either way so no child inherits them."""
    env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "2", "LISTEN_FDNAMES": "coordinatord.socket"}
    assert systemd.listen_fds(env) == [(3, "coordinatord.socket"), (4, "unknown")]
    assert env == {}
    other = {"LISTEN_PID": "1", "LISTEN_FDS": "1"}
    assert systemd.listen_fds(other) == []
    assert other == {}  # not ours, and no child inherits them either
    assert systemd.listen_fds({"LISTEN_FDS": "1"}) == []
    assert systemd.inherited_listener({}) is None


def test_a_listening_unix_stream_socket_is_accepted(tmp: Path) -> None:
    """A listening Unix stream socket is accepted as the daemon's listener and made non-inheritable."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(tmp / "s.sock"))
        listener.listen()
        checked = systemd.check_listener(os.dup(listener.fileno()), "fd")
        try:
            assert checked.getsockname() == str(tmp / "s.sock")
            assert not checked.get_inheritable()
        finally:
            checked.close()


@pytest.mark.parametrize("kind", ["tcp", "datagram", "not-listening", "file", "closed"])
def test_anything_else_on_the_fd_is_a_clear_error(tmp: Path, kind: str) -> None:
    """A TCP, datagram or non-listening socket, a plain file or a closed fd is refused with an error saying
    which, and the fd is left open for systemd."""
    sock: socket.socket | None = None
    if kind == "tcp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        expected = "not AF_UNIX"
    elif kind == "datagram":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(tmp / "d.sock"))
        expected = "not SOCK_STREAM"
    elif kind == "not-listening":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(tmp / "n.sock"))
        expected = "is not listening"
    if sock is not None:
        fd = sock.fileno()
    elif kind == "file":
        handle = (tmp / "plain").open("w")
        fd, expected = handle.fileno(), "is not a socket"
    else:
        fd, expected = 999, "is not open"
    try:
        with pytest.raises(systemd.ActivationError, match=expected):
            systemd.check_listener(fd, "fd 3 (x)")
        if kind != "closed":
            os.fstat(fd)  # still open: systemd's to keep
    finally:
        if sock is not None:
            sock.close()
        elif kind == "file":
            handle.close()


@pytest.fixture
def fake(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake systemctl first on PATH and a HOME of the test's; returns its state dir."""
    state = tmp / "systemctl"
    fake_systemctl.install(tmp / "bin", state)
    monkeypatch.setenv("PATH", f"{tmp / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SYSTEMCTL_DIR", str(state))
    monkeypatch.setenv("HOME", str(tmp / "home"))
    return state


def test_unit_state_reports_files_and_what_systemd_says(fake: Path, tmp: Path) -> None:
    """The unit state combines the files on disk (installed, carrying our marker) with what systemctl says
    (enabled, active, sub-state), and the socket path comes from the socket unit's ListenStream."""
    units = tmp / "home" / ".config" / "systemd" / "user"
    units.mkdir(parents=True)
    (units / systemd.SERVICE).write_text(systemd.MARKER + "\n[Service]\n")
    (units / systemd.SOCKET).write_text("[Socket]\nListenStream=%t/coordinatord/coordinatord.sock\n")
    fake_systemctl.set_state(fake, systemd.SOCKET, "enabled", "active", "listening")
    state = systemd.unit_state()
    assert state.manager_problem is None
    assert state.service == systemd.UnitState(
        systemd.SERVICE, installed=True, ours=True, enabled=False, active="inactive", sub_state="dead"
    )
    assert state.socket == systemd.UnitState(
        systemd.SOCKET, installed=True, ours=False, enabled=True, active="active", sub_state="listening"
    )
    assert state.running_under_systemd
    assert state.as_dict()["socket"] == {
        "name": systemd.SOCKET,
        "installed": True,
        "ours": False,
        "enabled": True,
        "active": "active",
        "sub_state": "listening",
    }
    uid = os.getuid()
    assert systemd.unit_socket_path() == Path(f"/run/user/{uid}/coordinatord/coordinatord.sock")


def test_unit_state_without_a_user_manager(fake: Path) -> None:
    """Without a user manager the state carries systemctl's error and nothing is reported as installed or
    running, and there is no unit socket path."""
    (fake / "no-manager").touch()
    state = systemd.unit_state()
    assert state.manager_problem is not None and "No medium found" in state.manager_problem
    assert state.service == systemd.UnitState(systemd.SERVICE, False, False, None, None, None)
    assert not state.running_under_systemd
    assert systemd.unit_socket_path() is None


def test_no_systemctl_at_all(monkeypatch: pytest.MonkeyPatch, tmp: Path) -> None:
    """With no systemctl on PATH the problem says exactly that."""
    monkeypatch.setenv("PATH", str(tmp))
    assert systemd.user_manager_problem() == "there is no systemctl on PATH"
