"""Finding a daemon from its lock files (coordinatord/daemon_locks.py), with real flocks on real
files: held or not, by whom, and whether the pid written in a lock is the process holding it."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from coordinatord.daemon.claim import hold_lock
from coordinatord.daemon_locks import (
    LockOwner,
    daemon_holding,
    held,
    socket_lock_path,
    state_lock_path,
    unreachable,
)
from coordinatord.errors import AlreadyRunningError
from tests.support import short_tmpdir


@pytest.fixture
def folder() -> Iterator[Path]:
    path = short_tmpdir()
    try:
        yield path
    finally:
        for child in path.iterdir():
            child.unlink()
        path.rmdir()


def lock(path: Path, text: str) -> IO[str]:
    """Hold an exclusive flock on ``path`` (with ``text`` in it) through an open file of our own,
    as a daemon does; another open of the same file conflicts with it, even in this process."""
    handle = open(path, "w")  # noqa: SIM115 - the caller closes it
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    handle.write(text)
    handle.flush()
    return handle


def test_a_lock_nobody_holds_is_no_daemon(folder: Path) -> None:
    """No file, or a file whose lock is free (a daemon killed with SIGKILL leaves one): None,
    and looking creates nothing."""
    assert held(folder / "none.lock") is None
    assert not (folder / "none.lock").exists()
    (folder / "left.lock").write_text("12345\n")
    assert held(folder / "left.lock") is None


def test_a_held_lock_names_its_holder_and_the_pid_is_checked(folder: Path) -> None:
    """A held lock gives the pid and socket written in it; the pid counts as verified only when
    that process has the lock file open (here: this process), not for a pid written by mistake."""
    with lock(folder / "c.sock.lock", f"{os.getpid()}\n/some/c.sock\n"):
        holder = held(folder / "c.sock.lock")
        assert holder is not None
        assert holder.owner == LockOwner(str(os.getpid()), "/some/c.sock")
        assert holder.verified_pid() == os.getpid()
    with lock(folder / "other.lock", f"{os.getppid()}\n"):
        holder = held(folder / "other.lock")
        assert holder is not None and holder.pid == os.getppid()
        assert holder.verified_pid() is None  # our parent does not have it open


def test_the_state_dir_lock_counts_only_for_its_own_socket(folder: Path) -> None:
    """With the socket's folder (and its lock) gone, the state dir's lock finds the daemon when
    it names this socket, and not when it serves another."""
    socket_path = folder / "gone" / "c.sock"
    assert socket_lock_path(socket_path) == folder / "gone" / "c.sock.lock"
    with lock(state_lock_path(folder), f"{os.getpid()}\n{socket_path}\n"):
        found = daemon_holding(socket_path, folder)
        assert found is not None and found.verified_pid() == os.getpid()
        assert daemon_holding(folder / "elsewhere.sock", folder) is None
        assert daemon_holding(socket_path, None) is None
        said = unreachable(found, socket_path)
        assert f"pid {os.getpid()}" in said and f"{socket_path} is missing" in said
        assert f"coordinatord stop --socket {socket_path}" in said


def test_a_look_at_a_lock_does_not_make_a_starting_daemon_give_up(folder: Path) -> None:
    """``status`` or a shim looking (holding the lock for an instant) while a daemon takes it:
    the daemon tries again for a moment and gets it; a lock held for good is still refused."""
    path = folder / "c.sock.lock"
    looker = lock(path, "")
    threading.Timer(0.05, looker.close).start()  # the look ends 50 ms later
    taken = hold_lock(path, lambda owner: f"held by {owner.pid}")
    try:
        assert path.read_text() == str(os.getpid())
        with pytest.raises(AlreadyRunningError, match=f"held by {os.getpid()}"):
            hold_lock(path, lambda owner: f"held by {owner.pid}")
    finally:
        taken.release()
