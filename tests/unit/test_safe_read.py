"""The one reader of files someone else controls (:mod:`coordinatord.safe_read`): a regular file
is read whole up to its cap; a FIFO, a device (itself or through a symlink), a socket, a folder,
a symlink loop and a huge sparse file are refused at once, naming the path, what it is and the
fix, without blocking and without reading them; a file that grows past the cap while it is read
is refused too."""

from __future__ import annotations

import os
import socket
import stat
import threading
import tracemalloc
from pathlib import Path

import pytest

from coordinatord import safe_read
from coordinatord.errors import FileRefusedError, FileTooLargeError, LimitExceededError

CAP = 1024
SETTING = "sessions.max_archive_bytes = 1024"


def read(path: Path, cap: int = CAP, *, follow: bool = True) -> bytes:
    return safe_read.read_bytes(path, cap, setting=SETTING, follow_symlinks=follow)


def test_a_regular_file_is_read_whole_up_to_its_cap(tmp_path: Path) -> None:
    """A file of exactly the cap is read whole, an empty one is empty, and the stat is its own."""
    path = tmp_path / "a.json"
    path.write_bytes(b"x" * CAP)
    assert read(path) == b"x" * CAP
    data, info = safe_read.read_with_stat(path, CAP, setting=SETTING)
    assert (len(data), info.st_size, info.st_ino) == (CAP, CAP, path.stat().st_ino)
    (tmp_path / "empty").write_bytes(b"")
    assert read(tmp_path / "empty") == b""


def test_one_byte_over_the_cap_is_refused_naming_the_setting(tmp_path: Path) -> None:
    """A file larger than the cap is a FileTooLargeError (a LimitExceededError too) naming the
    path, both sizes and the setting that raises the cap."""
    path = tmp_path / "big.json"
    path.write_bytes(b"x" * (CAP + 1))
    with pytest.raises(FileTooLargeError) as caught:
        read(path)
    assert isinstance(caught.value, LimitExceededError)
    assert str(caught.value).startswith(f"{path} is 1.0 KiB (1025 bytes), larger than 1.0 KiB (1024 bytes)")
    assert SETTING in str(caught.value)


def test_a_sparse_file_of_a_gibibyte_is_refused_without_reading_it(tmp_path: Path) -> None:
    """The size comes from the file's stat: a 1 GiB sparse file is refused before any byte of it
    is read, so the reader allocates nothing near its size."""
    path = tmp_path / "sparse.json"
    with path.open("wb") as handle:
        handle.truncate(1 << 30)
    tracemalloc.start()
    try:
        with pytest.raises(FileTooLargeError, match=r"is 1\.0 GiB"):
            read(path, 64 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    """A FIFO with no writer would block an open() for ever: it is refused, named as a FIFO."""
    path = tmp_path / "pipe.json"
    os.mkfifo(path)
    with pytest.raises(FileRefusedError, match=r"pipe\.json is a FIFO \(named pipe\); only regular files"):
        read(path)


def test_dev_zero_is_refused_itself_and_through_a_symlink(tmp_path: Path) -> None:
    """/dev/zero never ends: refused as a character device, directly and as a symlink's target;
    when symlinks are not followed, the symlink itself is refused as one."""
    with pytest.raises(FileRefusedError, match="/dev/zero is a character device"):
        read(Path("/dev/zero"))
    link = tmp_path / "zero.json"
    link.symlink_to("/dev/zero")
    with pytest.raises(FileRefusedError, match=r"zero\.json is a character device"):
        read(link)
    with pytest.raises(FileRefusedError, match=r"zero\.json is a symbolic link; symlinks are not followed"):
        read(link, follow=False)


def test_a_character_device_made_in_a_temp_folder_is_refused(tmp_path: Path) -> None:
    """A device node a repository could carry (made with mknod: /dev/zero's numbers) is refused
    without being opened."""
    path = tmp_path / "dev.json"
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 5))
    except PermissionError:
        pytest.skip("mknod of a character device needs CAP_MKNOD")
    with pytest.raises(FileRefusedError, match="is a character device"):
        read(path)


def test_a_socket_and_a_folder_are_refused(tmp_path: Path) -> None:
    """A Unix socket file and a directory are not files to read: each is named for what it is."""
    sock_path = tmp_path / "s.json"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(sock_path))
        with pytest.raises(FileRefusedError, match="is a socket"):
            read(sock_path)
    (tmp_path / "d.json").mkdir()
    with pytest.raises(FileRefusedError, match="is a directory"):
        read(tmp_path / "d.json")


@pytest.mark.parametrize("follow", [True, False])
def test_a_symlink_loop_is_refused_not_a_crash(tmp_path: Path, follow: bool) -> None:
    """A symlink to itself, or two pointing at each other, is a clear refusal either way."""
    (tmp_path / "self.json").symlink_to("self.json")
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    for name in ("self.json", "a"):
        with pytest.raises(FileRefusedError, match=f"{name} is (a symlink loop|a symbolic link)"):
            read(tmp_path / name, follow=follow)


def test_a_file_whose_size_lies_is_read_only_to_its_cap() -> None:
    """A /proc file says it is empty and is not: what it holds is read when it fits the cap and
    refused, as grown past the cap, when it does not."""
    path = Path("/proc/self/status")
    assert path.stat().st_size == 0
    assert b"VmRSS" in safe_read.read_bytes(path, 1 << 20, setting=SETTING)
    with pytest.raises(FileTooLargeError, match=r"grew past 100 bytes while it was read"):
        safe_read.read_bytes(path, 100, setting=SETTING)


def test_a_missing_file_is_not_a_refusal(tmp_path: Path) -> None:
    """Absent is for the caller to judge: FileNotFoundError, not a refusal."""
    with pytest.raises(FileNotFoundError):
        read(tmp_path / "none.json")


def test_a_path_relative_to_an_open_folder_is_read_there(tmp_path: Path) -> None:
    """With dir_fd, the name is looked up in that folder (the memory bank's confinement), and
    errors name the file as the caller shows it."""
    (tmp_path / "brief.md").write_text("# Brief\n")
    (tmp_path / "loop.md").symlink_to("loop.md")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert safe_read.read_bytes("brief.md", CAP, setting=SETTING, dir_fd=fd) == b"# Brief\n"
        with pytest.raises(FileRefusedError, match=r"^shown/loop\.md is a symbolic link"):
            safe_read.read_bytes(
                "loop.md", CAP, setting=SETTING, dir_fd=fd, follow_symlinks=False, shown_as="shown/loop.md"
            )
    finally:
        os.close(fd)


def test_text_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    """read_text decodes strictly and names the first bad byte."""
    path = tmp_path / "t.toml"
    path.write_bytes(b"ok\xff")
    with pytest.raises(FileRefusedError, match=r"is not UTF-8 text \(byte 2\)"):
        safe_read.read_text(path, CAP, setting=SETTING)


def test_the_file_a_thread_reads_is_known_while_it_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a thread is inside a read, reading_in names its file (how a read that does not
    answer in time is named); afterwards, nothing."""
    path = tmp_path / "slow.json"
    path.write_bytes(b"{}")
    inside, release = threading.Event(), threading.Event()
    real = safe_read._read_capped

    def slow(*args: object, **kwargs: object) -> bytes:
        inside.set()
        release.wait(10)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(safe_read, "_read_capped", slow)
    reader = threading.Thread(target=read, args=(path,))
    reader.start()
    assert inside.wait(10)
    assert reader.ident is not None and safe_read.reading_in(reader.ident) == str(path)
    release.set()
    reader.join(10)
    assert safe_read.reading_in(reader.ident) is None
