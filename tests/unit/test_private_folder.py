"""The private-folder rule (coordinatord.private_folder) and the default socket's choice of folder
(coordinatord.paths.default_socket): the pure judgements on lstat results, then the same on real
folders in the test's temp dir (never the machine's /tmp/coordinatord-<uid> or /run/user)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinatord import paths, private_folder
from coordinatord.daemon.claim import SocketClaim
from coordinatord.errors import DaemonError, UnsafeFolderError

ME = os.geteuid()
NOBODY = 65534
as_root = pytest.mark.skipif(ME != 0, reason="giving a folder to another uid needs root")


def lstat_of(mode: int, uid: int = ME) -> os.stat_result:
    """An lstat result with this mode (type bits included) and owner."""
    return os.stat_result((mode, 1, 1, 1, uid, 0, 4096, 0, 0, 0))


@pytest.mark.parametrize("mode", [0o700, 0o500, 0o740, 0o704, 0o744, 0o750, 0o711, 0o755])
def test_a_folder_of_ours_that_others_cannot_write_is_private(mode: int) -> None:
    """Owner bits as they come, read and search for group or others: private (they list names
    and reach entries that guard themselves; mkdir's usual 0755 must keep working)."""
    assert private_folder.folder_problem(lstat_of(stat.S_IFDIR | mode), ME) is None


@pytest.mark.parametrize(
    ("mode", "whom"),
    [
        (0o720, "group"),
        (0o770, "group"),
        (0o702, "others"),
        (0o757, "others"),
        (0o722, "group and others"),
        (0o777, "group and others"),
        (0o1777, "group and others"),
    ],
)
def test_write_for_group_or_others_is_refused(mode: int, whom: str) -> None:
    """Any write bit of group or others (0o022) makes the folder open, /tmp's 1777 too;
    the finding names who and the mode."""
    problem = private_folder.folder_problem(lstat_of(stat.S_IFDIR | mode), ME)
    assert problem is not None
    assert problem.startswith(f"writable by {whom}:")
    assert f"mode {mode:04o}" in problem


def test_a_folder_of_another_uid_is_refused_whatever_its_mode() -> None:
    """Owned by another uid (here nobody, 65534): refused even at 0700, naming the owner's name and uid."""
    problem = private_folder.folder_problem(lstat_of(stat.S_IFDIR | 0o700, NOBODY), ME)
    assert problem is not None
    assert "not yours" in problem and f"(uid {NOBODY})" in problem and "mode 0700" in problem


def test_a_symbolic_link_or_a_file_is_no_folder() -> None:
    """A symbolic link is judged as itself, never through its target; a regular file is no folder."""
    link = private_folder.folder_problem(lstat_of(stat.S_IFLNK | 0o777), ME)
    assert link is not None and link.startswith("a symbolic link")
    plain = private_folder.folder_problem(lstat_of(stat.S_IFREG | 0o600), ME)
    assert plain is not None and plain.startswith("not a folder")


@pytest.mark.parametrize(
    ("mode", "uid", "fine"),
    [
        (0o755, 0, True),  # /home, /
        (0o755, ME, True),  # the home directory
        (0o775, ME, True),  # a user-private group's g+w: not judged
        (0o1777, 0, True),  # /tmp: sticky
        (0o777, 0, False),  # others may rename our folder away
        (0o755, NOBODY, False),  # a third user owns the folder above ours
    ],
)
def test_folders_above(mode: int, uid: int, fine: bool) -> None:
    """A folder above ours passes when root or we own it and others cannot write it (unless sticky)."""
    problem = private_folder.ancestor_problem(lstat_of(stat.S_IFDIR | mode, uid), ME)
    assert (problem is None) is fine, problem


# -- on real folders ---------------------------------------------------------------------------


@pytest.fixture
def base(tmp_path: Path) -> Iterator[Path]:
    """A temp folder that passes as a parent (0755, ours), umask restored afterwards."""
    tmp_path.chmod(0o755)
    umask = os.umask(0o022)
    try:
        yield tmp_path
    finally:
        os.umask(umask)


def test_inspect_passes_a_missing_or_private_folder_and_names_an_open_one(base: Path) -> None:
    """Missing (the daemon will make it) or 0700: fine; opened to 0777: refused with its path, owner
    and mode."""
    folder = base / "sock"
    assert private_folder.inspect(folder) is None
    folder.mkdir(mode=0o700)
    assert private_folder.inspect(folder) is None
    folder.chmod(0o777)
    problem = private_folder.inspect(folder)
    assert problem is not None
    assert problem.startswith(f"{folder} is writable by group and others:") and "mode 0777" in problem


def test_inspect_judges_the_link_not_its_target(base: Path) -> None:
    """A symbolic link to a private folder of ours is still refused: nothing follows it."""
    target = base / "real"
    target.mkdir(mode=0o700)
    (base / "link").symlink_to(target)
    problem = private_folder.inspect(base / "link")
    assert problem is not None and "symbolic link" in problem


def test_inspect_refuses_a_folder_under_one_others_can_write(base: Path) -> None:
    """A private folder inside a world-writable folder without the sticky bit could be renamed away
    and replaced: refused, naming the folder above."""
    shared = base / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    (shared / "mine").mkdir(mode=0o700)
    problem = private_folder.inspect(shared / "mine")
    assert problem is not None
    assert problem.startswith(f"{shared}, above {shared / 'mine'}, is writable by others without the sticky")
    shared.chmod(0o1777)  # sticky, as /tmp: nobody may rename what is ours
    assert private_folder.inspect(shared / "mine") is None


def test_ensure_creates_each_missing_folder_private(base: Path) -> None:
    """Every folder it makes is 0700, whatever the umask took away (it cannot add bits)."""
    os.umask(0o277)  # would leave the owner without write and search
    target = base / "a" / "b" / "c"
    assert private_folder.ensure(target) is True
    assert stat.S_IMODE(os.lstat(target).st_mode) == 0o700
    for made in (base / "a", base / "a" / "b"):
        assert stat.S_IMODE(os.lstat(made).st_mode) & 0o077 == 0
    assert private_folder.ensure(target) is False  # there and private: left as it is


def test_ensure_refuses_an_open_folder_without_changing_it(base: Path) -> None:
    """A folder of ours left at 0777 is refused, not tightened: what others put in it while it was
    open would stay."""
    folder = base / "open"
    folder.mkdir()
    folder.chmod(0o777)
    with pytest.raises(UnsafeFolderError, match=r"writable by group and others: .* mode 0777"):
        private_folder.ensure(folder)
    assert stat.S_IMODE(os.lstat(folder).st_mode) == 0o777


def test_ensure_refuses_a_symbolic_link_and_leaves_its_target_alone(base: Path) -> None:
    """A link at the folder's name (to a folder others can write) is refused; the target keeps its mode."""
    target = base / "elsewhere"
    target.mkdir()
    target.chmod(0o777)
    (base / "sock").symlink_to(target)
    with pytest.raises(UnsafeFolderError, match="symbolic link"):
        private_folder.ensure(base / "sock")
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o777


@as_root
def test_ensure_refuses_a_folder_of_another_uid(base: Path) -> None:
    """A folder another uid made first (nobody's, 0700 even) is refused and not taken over."""
    folder = base / "taken"
    folder.mkdir(mode=0o700)
    os.chown(folder, NOBODY, NOBODY)
    with pytest.raises(UnsafeFolderError, match=rf"not yours: owned by .*\(uid {NOBODY}\), mode 0700"):
        private_folder.ensure(folder)
    info = os.lstat(folder)
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (NOBODY, 0o700)
    assert "its owner or root must remove it" in private_folder.remedy(folder)


def test_remedies_name_the_fix_for_each_case(base: Path) -> None:
    """Open and ours: check, then chmod 700; a file: replace it; a problem above: choose another place."""
    folder = base / "open"
    folder.mkdir()
    folder.chmod(0o775)
    assert private_folder.remedy(folder).endswith(f"then chmod 700 {folder}")
    (base / "file").write_text("")
    assert "mkdir -m 700" in private_folder.remedy(base / "file")
    folder.chmod(0o700)
    assert "choose a folder whose parents" in private_folder.remedy(folder)


# -- the default socket's folder ---------------------------------------------------------------


@pytest.fixture
def machine(base: Path) -> tuple[Path, Path, Path]:
    """A stand-in /tmp (1777), /run/user (empty) and home for default_socket()."""
    tmp, run_user, home = base / "tmp", base / "run-user", base / "home"
    tmp.mkdir()
    tmp.chmod(0o1777)
    run_user.mkdir()
    home.mkdir(mode=0o700)
    return tmp, run_user, home


def test_the_default_is_the_usual_folder_when_missing_or_private(machine: tuple[Path, Path, Path]) -> None:
    """No runtime dir: /tmp/coordinatord-<uid>, missing or ours at 0700; with the uid's runtime dir,
    the folder in it."""
    tmp, run_user, home = machine
    usual = tmp / f"coordinatord-{ME}"
    found = paths.default_socket(ME, run_user, tmp, home)
    assert (found.path, found.unsafe) == (usual / paths.SOCKET_NAME, None)
    usual.mkdir(mode=0o700)
    assert paths.default_socket_path(ME, run_user, tmp, home) == usual / paths.SOCKET_NAME
    (run_user / str(ME)).mkdir(mode=0o700)
    runtime = run_user / str(ME) / "coordinatord" / paths.SOCKET_NAME
    assert paths.default_socket_path(ME, run_user, tmp, home) == runtime
    assert paths.socket_note(runtime, paths.default_socket(ME, run_user, tmp, home)).startswith(
        "the default folder"
    )


@as_root
def test_a_squatted_default_folder_sends_the_socket_to_the_home_fallback(
    machine: tuple[Path, Path, Path],
) -> None:
    """/tmp/coordinatord-<uid> made first by nobody at 0777: the default moves to
    ~/.local/state/coordinatord/run, and says why (owner, mode)."""
    tmp, run_user, home = machine
    usual = tmp / f"coordinatord-{ME}"
    usual.mkdir()
    usual.chmod(0o777)
    os.chown(usual, NOBODY, NOBODY)
    found = paths.default_socket(ME, run_user, tmp, home)
    assert found.path == home / ".local" / "state" / "coordinatord" / "run" / paths.SOCKET_NAME
    assert found.usual == usual
    assert found.unsafe is not None and f"(uid {NOBODY}), mode 0777" in found.unsafe
    assert found.note() == f"the default's private fallback, because {found.unsafe}"


def test_an_open_default_folder_of_ours_also_falls_back(machine: tuple[Path, Path, Path]) -> None:
    """Ours but opened to 0777 by hand: passed over too, for the same fallback."""
    tmp, run_user, home = machine
    usual = tmp / f"coordinatord-{ME}"
    usual.mkdir()
    usual.chmod(0o777)
    found = paths.default_socket(ME, run_user, tmp, home)
    assert found.path.parent == paths.fallback_socket_dir(home)
    assert found.unsafe is not None and "writable by group and others" in found.unsafe


def test_a_fallback_too_long_for_a_unix_socket_is_refused_with_the_reason(
    machine: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A home so deep that the fallback passes 107 bytes: the daemon's claim says so, and why the
    fallback was taken, instead of failing to bind."""
    tmp, run_user, home = machine
    deep = home / ("d" * 80)
    deep.mkdir(mode=0o700)
    usual = tmp / f"coordinatord-{ME}"
    usual.mkdir()
    usual.chmod(0o777)
    monkeypatch.setattr(paths, "TMP", tmp)
    monkeypatch.setattr(paths, "RUN_USER", run_user)
    monkeypatch.setenv("HOME", str(deep))
    socket_path = paths.default_socket_path()
    assert len(os.fsencode(socket_path)) > 107
    with pytest.raises(DaemonError) as raised:
        SocketClaim(socket_path).acquire()
    message = str(raised.value)
    assert "longer than 107 bytes" in message
    assert f"because {usual} is writable by group and others" in message
    assert not paths.fallback_socket_dir(deep).exists()  # nothing made for a path that cannot be bound
