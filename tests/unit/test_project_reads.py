"""The runner of a project's file reads (:mod:`coordinatord.project_reads`), with real worker
threads and no servers: a read's result and errors pass through; a read that does not answer
is given up within ``project_files.read_timeout_s`` naming the file it was in; a project whose
reads hang holds at most ``reads_per_project`` threads, while another project's reads are
answered meanwhile; and once the hung reads end, the project's reads work again."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from coordinatord import safe_read
from coordinatord.errors import FileRefusedError, NotFoundError
from coordinatord.project_reads import ProjectReads
from coordinatord.settings import ProjectFileSettings

pytestmark = pytest.mark.anyio

TIMEOUT_S = 0.5
PER_PROJECT = 2
WAIT_S = 20  # the bound on every wait for a thread


def reads() -> ProjectReads:
    return ProjectReads(ProjectFileSettings(read_timeout_s=TIMEOUT_S, reads_per_project=PER_PROJECT))


class Hang:
    """Makes every safe read hang (inside the read, its path registered) until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.release = threading.Event()
        self.entered = 0
        self._lock = threading.Lock()
        real = safe_read._read_capped

        def hung(*args: object, **kwargs: object) -> bytes:
            with self._lock:
                self.entered += 1
            self.release.wait(WAIT_S)
            return real(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(safe_read, "_read_capped", hung)


@pytest.fixture
def hang(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hang]:
    hanging = Hang(monkeypatch)
    try:
        yield hanging
    finally:
        hanging.release.set()  # never leave a thread behind


def a_file(tmp_path: Path, name: str = "f.json") -> Path:
    path = tmp_path / name
    path.write_bytes(b"{}")
    return path


def read(path: Path) -> bytes:
    return safe_read.read_bytes(path, 1024, setting="x")


async def wait_until_idle(runner: ProjectReads, root: str) -> None:
    with anyio.fail_after(WAIT_S):
        while runner.busy(root):  # noqa: ASYNC110 - a worker thread's end is the event
            await anyio.sleep(0.01)


async def test_a_result_and_an_error_pass_through(tmp_path: Path) -> None:
    """What the function returns is the call's result; what it raises, the call's error."""
    runner = reads()
    assert await runner.run(str(tmp_path), read, a_file(tmp_path)) == b"{}"

    def missing() -> None:
        raise NotFoundError("gone")

    with pytest.raises(NotFoundError, match="gone"):
        await runner.run(str(tmp_path), missing)
    assert runner.busy(str(tmp_path)) == 0


async def test_a_read_that_does_not_answer_is_given_up_naming_its_file(tmp_path: Path, hang: Hang) -> None:
    """A hung read is refused after the time bound, naming the file it is stuck in and the
    setting; its thread keeps the project's token until it really ends."""
    runner, path = reads(), a_file(tmp_path)
    with pytest.raises(FileRefusedError) as refused:
        await runner.run(str(tmp_path), read, path)
    message = str(refused.value)
    assert message.startswith(
        f"{path} was still being read when the call's project_files.read_timeout_s = 0.5 s ran out"
    )
    assert "network or FUSE mount" in message
    assert runner.busy(str(tmp_path)) == 1
    hang.release.set()
    await wait_until_idle(runner, str(tmp_path))


async def test_a_hung_project_holds_its_own_threads_only(tmp_path: Path, hang: Hang) -> None:
    """Forty hung reads of one project start at most reads_per_project threads and are all
    refused within the bound; another project's reads are answered meanwhile; once the hung
    reads end, the project's tokens are back and its reads work again."""
    hostile, healthy = tmp_path / "hostile", tmp_path / "healthy"
    hostile.mkdir()
    runner, stuck = reads(), a_file(hostile)
    refusals: list[str] = []
    answered: list[bytes] = []

    async def hostile_read() -> None:
        try:
            await runner.run(str(hostile), read, stuck)
        except FileRefusedError as exc:
            refusals.append(str(exc))

    async def healthy_reads() -> None:
        # Once the hostile project's threads are stuck (every safe read hangs here, so the
        # healthy project's read is one that does not touch a file).
        with anyio.fail_after(WAIT_S):
            while hang.entered < PER_PROJECT:  # noqa: ASYNC110 - worker threads are the event
                await anyio.sleep(0.01)
        answered.append(await runner.run(str(healthy), lambda: b"answered"))

    with anyio.fail_after(WAIT_S):
        async with anyio.create_task_group() as tg:
            for _ in range(40):
                tg.start_soon(hostile_read)
            tg.start_soon(healthy_reads)
    assert answered == [b"answered"]
    assert len(refusals) == 40
    assert hang.entered == PER_PROJECT  # the other 38 never got a thread
    assert sum("was still being read" in text for text in refusals) == PER_PROJECT
    waited = [text for text in refusals if "was still being read" not in text]
    assert waited[0].startswith(f"project {hostile} has {PER_PROJECT} reads of its files still running")
    assert f"(reading {stuck}, {stuck})" in waited[0]
    assert runner.busy(str(hostile)) == PER_PROJECT

    hang.release.set()
    await wait_until_idle(runner, str(hostile))
    assert await runner.run(str(hostile), lambda: b"again") == b"again"


async def test_calls_given_up_give_their_tokens_back_once_their_threads_end(tmp_path: Path) -> None:
    """Callers that went away (cancelled: two in their threads, one waiting for a token) leave
    the project idle once the threads end, and its next read runs."""
    runner = reads()
    started = threading.Event()
    release = threading.Event()

    def blocking() -> None:
        started.set()
        release.wait(WAIT_S)

    with anyio.move_on_after(0.2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner.run, str(tmp_path), blocking)
            tg.start_soon(runner.run, str(tmp_path), blocking)
            tg.start_soon(runner.run, str(tmp_path), blocking)  # waits: PER_PROJECT is 2
    release.set()
    await wait_until_idle(runner, str(tmp_path))
    assert await runner.run(str(tmp_path), lambda: 1) == 1
