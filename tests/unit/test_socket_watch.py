"""The daemon's look at its socket path (coordinatord/daemon/socket_watch.py): what counts as a
change, and how a removed folder is made again. The daemon's side end to end is in
tests/e2e/test_socket_comes_back.py."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinatord.daemon.socket_watch import make_private_folder, what_changed
from coordinatord.errors import DaemonError
from tests.support import short_tmpdir


def test_what_changed_compares_files_not_names() -> None:
    """Same device and inode with the lock in place: nothing. Nothing there: gone. Another file
    (even one with the same name): replaced. Socket fine, lock file not the one held: lock moved."""
    bound = (64, 1001)
    assert what_changed(bound, bound, lock_here=True) is None
    assert what_changed(bound, None, lock_here=True) == "gone"
    assert what_changed(bound, (64, 1002), lock_here=True) == "replaced"
    assert what_changed(bound, (65, 1001), lock_here=True) == "replaced"
    assert what_changed(bound, bound, lock_here=False) == "lock moved"
    assert what_changed(bound, None, lock_here=False) == "gone"


@pytest.fixture
def parent() -> Iterator[Path]:
    path = short_tmpdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_a_removed_folder_is_made_again_private(parent: Path) -> None:
    """Made with mode 0700 whatever the umask; made by us just before (a race with a starting
    daemon): accepted as it is ours and private."""
    folder = parent / "run"
    old = os.umask(0)
    try:
        make_private_folder(folder)
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    make_private_folder(folder)  # there already, ours, private: fine


def test_a_folder_made_open_by_someone_else_is_refused(parent: Path) -> None:
    """A folder at the socket's place open to others (or not a folder at all) is not used: the
    error names it and its mode."""
    folder = parent / "run"
    folder.mkdir()
    folder.chmod(0o777)
    with pytest.raises(
        DaemonError, match=r"no longer this daemon's .*run is writable by group and others.*mode 0777"
    ):
        make_private_folder(folder)
    folder.rmdir()
    folder.write_text("")
    with pytest.raises(DaemonError, match=r"no longer this daemon's .*run is not a folder"):
        make_private_folder(folder)


def test_a_folder_whose_parent_is_gone_is_not_made(parent: Path) -> None:
    """Only the socket's own folder is made again, never its parents (``/run/user/<uid>`` is
    systemd's to make): the error says it cannot."""
    with pytest.raises(DaemonError, match="cannot make the socket's folder"):
        make_private_folder(parent / "gone" / "run")
