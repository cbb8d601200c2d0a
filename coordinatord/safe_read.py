"""Reading a file someone else controls: a project's files (``.coordinatord.toml``, git's
config, knowledge files) and session archives. The one reader of them all.

Every path here may be anything a repository (or a hostile user) put there: a FIFO, whose
``open`` waits for a writer for ever; ``/dev/zero`` or a symlink to it, which never ends; a
socket; a symlink loop; a sparse file of a terabyte. :func:`read_bytes`:

- looks before it opens (``stat``, or ``lstat`` when symlinks are not followed) and refuses
  anything but a regular file, so a device is never even opened (opening some has effects);
- opens with ``O_NONBLOCK`` (a FIFO swapped in after the look cannot hang the open), with
  ``O_NOFOLLOW`` when the final component must not be a symlink, ``O_CLOEXEC`` always;
- checks the open descriptor again (``fstat``: a regular file, the one it looked at) and its
  size against the cap before reading a byte;
- reads at most ``cap + 1`` bytes, so a file that grows while it is read, or whose size lies
  (``/proc``), is refused too, and no more than the cap is ever held.

Refusals are :class:`~coordinatord.errors.FileRefusedError`, naming the path, what it is and
what to do; a missing file is :class:`FileNotFoundError` (callers decide what absent means)
and any other ``OSError`` (permission, I/O) is raised as it is.

Standard library only (and :mod:`coordinatord.errors`): blocking, so the daemon calls it in a
worker thread under a time bound (:mod:`coordinatord.project_reads`). Which file each thread is
reading is kept (:func:`reading_in`) so that a read that does not answer in time can be named.
"""

from __future__ import annotations

import errno
import os
import stat
import threading

from coordinatord.errors import FileRefusedError, FileTooLargeError

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISLNK, "a symbolic link"),
)
CHUNK_BYTES = 1 << 20
"""Reads after the first (a file that grew past its ``fstat`` size) go in steps of this size."""

_counted = threading.local()
"""Bytes this thread has read (:func:`bytes_read`)."""

_reading: dict[int, str] = {}
"""Thread id → the path that thread is reading now (a plain dict: each thread writes its own
key, and the GIL makes each write atomic)."""


def kind_of(mode: int) -> str:
    """What a file that is not a regular file is, in words."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return f"not a regular file (mode {stat.S_IFMT(mode):#o})"


def bytes_read() -> int:
    """How many bytes the calling thread has read with this module, ever (compare two readings)."""
    total: int = getattr(_counted, "total", 0)
    return total


def reading_in(thread_id: int) -> str | None:
    """The path the thread ``thread_id`` is reading at this moment, if any."""
    return _reading.get(thread_id)


def read_bytes(
    path: str | os.PathLike[str],
    max_bytes: int,
    *,
    setting: str,
    follow_symlinks: bool = True,
    dir_fd: int | None = None,
    shown_as: str | None = None,
) -> bytes:
    """The whole content of the regular file ``path``, at most ``max_bytes`` long.

    ``setting``: what sets ``max_bytes``, named when the file is larger (a setting's name, or a
    rule such as "a .coordinatord.toml holds one id"). ``follow_symlinks=False``: a symlink as
    the last component is refused. ``dir_fd``: ``path`` is relative to this open directory.
    ``shown_as``: how errors name the file (default: ``path``).
    """
    return read_with_stat(
        path, max_bytes, setting=setting, follow_symlinks=follow_symlinks, dir_fd=dir_fd, shown_as=shown_as
    )[0]


def read_with_stat(
    path: str | os.PathLike[str],
    max_bytes: int,
    *,
    setting: str,
    follow_symlinks: bool = True,
    dir_fd: int | None = None,
    shown_as: str | None = None,
) -> tuple[bytes, os.stat_result]:
    """:func:`read_bytes`, and the ``fstat`` of the file it read (its size and mtime)."""
    shown = shown_as or os.fspath(path)
    thread = threading.get_ident()
    _reading[thread] = shown
    try:
        return _read(path, max_bytes, setting, follow_symlinks, dir_fd, shown)
    finally:
        _reading.pop(thread, None)


def read_text(
    path: str | os.PathLike[str],
    max_bytes: int,
    *,
    setting: str,
    follow_symlinks: bool = True,
    shown_as: str | None = None,
) -> str:
    """:func:`read_bytes`, decoded as UTF-8; :class:`FileRefusedError` when it is not UTF-8."""
    shown = shown_as or os.fspath(path)
    data = read_bytes(path, max_bytes, setting=setting, follow_symlinks=follow_symlinks, shown_as=shown)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileRefusedError(shown, f"is not UTF-8 text (byte {exc.start})", "save it as UTF-8") from None


def _read(
    path: str | os.PathLike[str],
    max_bytes: int,
    setting: str,
    follow_symlinks: bool,
    dir_fd: int | None,
    shown: str,
) -> tuple[bytes, os.stat_result]:
    try:
        before = os.stat(path, dir_fd=dir_fd, follow_symlinks=follow_symlinks)
    except OSError as exc:
        _refuse_loop(exc, shown)
        raise
    _require_regular(before, shown, follow_symlinks)
    _require_size(before.st_size, max_bytes, setting, shown)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_symlinks else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)
    except OSError as exc:
        _refuse_loop(exc, shown)
        if exc.errno == errno.ENXIO:  # a socket (or a FIFO's writer end) swapped in after the look
            raise FileRefusedError(shown, "is not a regular file", _FIX_TYPE) from None
        raise
    try:
        info = os.fstat(fd)
        _require_regular(info, shown, follow_symlinks)
        if (info.st_dev, info.st_ino) != (before.st_dev, before.st_ino):
            raise FileRefusedError(shown, "was replaced while it was being opened", "try again")
        _require_size(info.st_size, max_bytes, setting, shown)
        return _read_capped(fd, info.st_size, max_bytes, setting, shown), info
    finally:
        os.close(fd)


def _read_capped(fd: int, size: int, max_bytes: int, setting: str, shown: str) -> bytes:
    # The first read asks for the size fstat gave plus one byte: one allocation of about the
    # file's size, and one byte more tells a file that grew since.
    first = os.read(fd, min(size, max_bytes) + 1)
    parts = [first]
    total = len(first)
    while total <= max_bytes and parts[-1]:
        part = os.read(fd, min(CHUNK_BYTES, max_bytes + 1 - total))
        parts.append(part)
        total += len(part)
    if total > max_bytes:
        raise FileTooLargeError(
            shown,
            f"grew past {_size(max_bytes)} while it was read",
            f"the limit is {setting}; stop whatever writes it, or raise the limit",
        )
    _counted.total = bytes_read() + total
    # Two parts: the whole file, then the empty read at its end (no copy needed).
    return first if len(parts) <= 2 else b"".join(parts)


_FIX_TYPE = "only regular files are read: replace it with one, or remove it"


def _require_regular(info: os.stat_result, shown: str, followed: bool) -> None:
    if stat.S_ISREG(info.st_mode):
        return
    fix = _FIX_TYPE
    if stat.S_ISLNK(info.st_mode) and not followed:
        fix = "symlinks are not followed here: put the file itself there"
    raise FileRefusedError(shown, f"is {kind_of(info.st_mode)}", fix)


def _require_size(size: int, max_bytes: int, setting: str, shown: str) -> None:
    if size > max_bytes:
        raise FileTooLargeError(
            shown,
            f"is {_size(size)}, larger than {_size(max_bytes)}",
            f"the limit is {setting}; make the file smaller or raise the limit",
        )


def symlink_loop(shown: str) -> FileRefusedError:
    """The refusal of a path that is a symlink loop (for callers that resolve paths themselves)."""
    return FileRefusedError(
        shown, "is a symlink loop (or a chain of too many symlinks)", "point the symlink at a real file"
    )


def _refuse_loop(exc: OSError, shown: str) -> None:
    if exc.errno == errno.ELOOP:
        raise symlink_loop(shown) from None


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit} ({n} bytes)"
    return f"{n} bytes"
