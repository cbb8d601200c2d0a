"""The daemon's log file: one JSON object per line, written once per event-loop iteration."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
import structlog

from coordinatord import logs
from coordinatord.settings import LoggingSettings


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "state" / "coordinatord.log"
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logs.configure(LoggingSettings(console="never"), path)
    yield path
    structlog.reset_defaults()
    root.handlers[:], root.level = handlers, level


def events(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_lines_logged_on_the_loop_reach_the_file_by_the_next_iteration(log_file: Path) -> None:
    """Lines logged on the event loop are held until the iteration ends, then written in order as JSON with
    level and timestamp."""
    log = structlog.get_logger("test")

    async def main() -> tuple[int, list[dict[str, object]]]:
        log.info("first", n=1)
        log.info("second", n=2)
        written_at_once = len(log_file.read_text().splitlines())  # noqa: ASYNC240 (on purpose: no await)
        await anyio.lowlevel.checkpoint()
        return written_at_once, events(log_file)

    written_at_once, after = anyio.run(main)
    assert written_at_once == 0  # buffered within the iteration ...
    assert [(e["event"], e["n"], e["level"]) for e in after] == [("first", 1, "info"), ("second", 2, "info")]
    assert all(isinstance(e["timestamp"], str) for e in after)


def test_lines_logged_off_the_loop_are_written_through(log_file: Path) -> None:
    """Lines logged with no event loop, or from another thread, are written to the file at once."""
    log = structlog.get_logger("test")
    log.info("no_loop")
    assert [e["event"] for e in events(log_file)] == ["no_loop"]
    worker = threading.Thread(target=lambda: log.warning("from_a_thread"))
    worker.start()
    worker.join()
    assert [e["event"] for e in events(log_file)] == ["no_loop", "from_a_thread"]


def test_a_line_after_the_loop_ended_is_not_held_back(log_file: Path) -> None:
    """A line whose flush was scheduled on a loop that then ended is still written, before lines logged
    after it."""
    log = structlog.get_logger("test")

    async def main() -> None:
        log.info("last_on_the_loop")  # its flush is scheduled; the loop ends before it runs

    anyio.run(main)
    log.info("after_the_loop")
    assert [e["event"] for e in events(log_file)] == ["last_on_the_loop", "after_the_loop"]


def test_the_daemon_logs_exceptions_without_rich() -> None:
    """With rich kept out (as ``coordinatord serve`` does: it is only for ``top``), structlog
    still renders an exception on the console, and rich is never imported."""
    code = (
        "import sys, tempfile, pathlib, io\n"
        "from coordinatord import cli\n"
        "cli.keep_rich_out()\n"
        "from coordinatord import logs\n"
        "from coordinatord.settings import LoggingSettings\n"
        "import structlog\n"
        "folder = pathlib.Path(tempfile.mkdtemp())\n"
        "console = io.StringIO()\n"
        "logs.configure(LoggingSettings(console='always'), folder / 'd.log', console=console)\n"
        "try:\n"
        "    1 / 0\n"
        "except ZeroDivisionError:\n"
        "    structlog.get_logger('t').exception('boom')\n"
        "print(sys.modules.get('rich') is None, 'ZeroDivisionError' in console.getvalue())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["True", "True"], out.stderr
