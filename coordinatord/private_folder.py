"""Whether a folder is private to one uid, and making one that is: for the socket's folder and
the state dir.

Standard library only: the shim imports it (through :mod:`coordinatord.paths`) to find the
default socket, so the same rule picks the folder on both sides of the socket.

The rule, for the folder itself (its own inode, never a symbolic link's target): it is a
directory, owned by the uid, and neither group nor others hold its write bit (they could add,
rename or remove entries in it: put their own socket where ours was). Read and search bits are
allowed: they let others list the names and reach an entry, and every entry guards itself (the
socket is ``0600``, so nobody else may connect; the lock files are ``0600``), while ``0755`` is
what ``mkdir`` gives under the usual umask, so ``--socket ~/x.sock`` in a ``0755`` home keeps
working. ``0700``, ``0750`` and ``0755`` pass; ``0770``, ``0777``, ``1777`` (``/tmp`` itself)
do not.

For every folder above it (the real path, symbolic links resolved): owned by root or by the uid,
and not writable by others unless its sticky bit is set (in ``/tmp``, mode ``1777``, nobody
may rename or remove an entry of another's). A folder writable by others without that bit, or
owned by a third user, could have our folder renamed away and another put in its place. The
group's write bit on those folders is not judged: with a user's private group (Debian, Ubuntu,
Fedora: umask 002) it is common on folders in the home directory and lets in nobody else.

Nothing here changes the mode of a folder it did not create: a folder that was open may hold
entries another user put there while it was (a symbolic link at the lock file's name, say), and
tightening it would keep those; such a folder is refused, and the message names the fix.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from coordinatord.errors import UnsafeFolderError

OPEN_BITS = stat.S_IWGRP | stat.S_IWOTH
"""The bits of a private folder that group and others must not hold (``0o022``)."""
PRIVATE_MODE = 0o700


def who(uid: int) -> str:
    """``nobody (uid 65534)``, or ``uid 4242`` for a uid with no passwd entry."""
    import pwd  # a few ms: only a message pays for it

    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (KeyError, OverflowError):
        return f"uid {uid}"


def describe(info: os.stat_result) -> str:
    """``owned by nobody (uid 65534), mode 0777``."""
    return f"owned by {who(info.st_uid)}, mode {stat.S_IMODE(info.st_mode):04o}"


def folder_problem(info: os.stat_result, uid: int) -> str | None:
    """Why a folder whose ``lstat`` is ``info`` is not private to ``uid`` (None: it is). Pure."""
    mode = info.st_mode
    if stat.S_ISLNK(mode):
        return f"a symbolic link, {describe(info)}, not a folder"
    if not stat.S_ISDIR(mode):
        return f"not a folder ({describe(info)})"
    if info.st_uid != uid:
        return f"not yours: {describe(info)}"
    if mode & OPEN_BITS:
        return f"writable by {_whom(mode)}: {describe(info)}"
    return None


def ancestor_problem(info: os.stat_result, uid: int) -> str | None:
    """Why a folder above ours (its ``stat``) lets another user replace ours (None: it does not).
    Pure."""
    if info.st_uid not in (0, uid):
        return f"owned by a third user: {describe(info)}"
    if info.st_mode & stat.S_IWOTH and not info.st_mode & stat.S_ISVTX:
        return f"writable by others without the sticky bit: {describe(info)}"
    return None


def _whom(mode: int) -> str:
    group = "group" if mode & stat.S_IWGRP else ""
    others = "others" if mode & stat.S_IWOTH else ""
    return " and ".join(part for part in (group, others) if part)


def inspect(path: Path, uid: int | None = None) -> str | None:
    """Why ``path`` cannot be ``uid``'s private folder, as ``<path> is <problem>`` (None: it is,
    or it does not exist yet and nothing above it is in the way). Reads, never changes."""
    uid = os.geteuid() if uid is None else uid
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return _ancestors_problem(path, uid)
    except OSError as exc:
        return f"{path} cannot be examined: {exc.strerror or exc}"
    problem = folder_problem(info, uid)
    if problem is not None:
        return f"{path} is {problem}"
    return _ancestors_problem(path, uid)


def _ancestors_problem(path: Path, uid: int) -> str | None:
    existing = Path(os.path.abspath(path)).parent
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    real = Path(os.path.realpath(existing))
    for folder in (real, *real.parents):
        try:
            info = os.stat(folder)
        except OSError as exc:
            return f"{folder}, above {path}, cannot be examined: {exc.strerror or exc}"
        problem = ancestor_problem(info, uid)
        if problem is not None:
            return f"{folder}, above {path}, is {problem}"
    return None


def ensure(path: Path, uid: int | None = None) -> bool:
    """Make ``path`` a private folder of ``uid`` (default: ours): create each missing folder
    with mode 0700, or check the one there. True when it was created here. Raises
    :class:`UnsafeFolderError` (``str`` is ``<path> is <problem>``) when it is not private.

    Race-safe: ``mkdir`` either makes the folder ours or fails because something is there, and
    what is there is then judged through a descriptor opened without following a symbolic link.
    """
    uid = os.geteuid() if uid is None else uid
    path = Path(os.path.abspath(path))
    problem = _ancestors_problem(path, uid)
    if problem is not None:
        raise UnsafeFolderError(problem)
    missing = []
    folder = path
    while not os.path.lexists(folder) and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    created = False
    for folder in reversed(missing):
        try:
            os.mkdir(folder, PRIVATE_MODE)
            created = folder == path
        except FileExistsError:
            pass  # made meanwhile, by us or by someone else: judged below like any other
        except OSError as exc:
            raise UnsafeFolderError(f"{folder} cannot be created: {exc.strerror or exc}") from None
    _check_and_settle(path, uid, created)
    return created


def _check_and_settle(path: Path, uid: int, created: bool) -> None:
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise UnsafeFolderError(f"{path} cannot be examined: {exc.strerror or exc}") from None
    problem = folder_problem(info, uid)
    if problem is not None:
        raise UnsafeFolderError(f"{path} is {problem}")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:  # replaced since the lstat
        raise UnsafeFolderError(f"{path} cannot be opened as a folder: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        problem = folder_problem(info, uid)
        if problem is not None:
            raise UnsafeFolderError(f"{path} is {problem}")
        if created and stat.S_IMODE(info.st_mode) != PRIVATE_MODE:
            # Ours, just made: a umask can have taken our own bits away (it cannot add any).
            os.fchmod(fd, PRIVATE_MODE)
    finally:
        os.close(fd)


def remedy(path: Path, uid: int | None = None) -> str:
    """How to make ``path`` usable as ``uid``'s private folder, or to do without it, for the
    message that refuses it."""
    uid = os.geteuid() if uid is None else uid
    try:
        info = os.lstat(path)
    except OSError:
        info = None
    if info is None or folder_problem(info, uid) is None:  # the trouble is above it
        return (
            f"choose a folder whose parents only you and root can change (in your home directory, say), "
            f"instead of {path}"
        )
    if info.st_uid != uid:
        return f"{path} is not yours: its owner or root must remove it (rm -r {path}), or use another folder"
    if not stat.S_ISDIR(info.st_mode):
        return f"replace {path} with a folder of your own: rm {path} && mkdir -m 700 {path}"
    return f"check that nothing in {path} is another user's (ls -la {path}), then chmod 700 {path}"
