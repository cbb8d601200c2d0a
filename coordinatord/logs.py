"""structlog set-up, done once by the daemon: JSON lines to a file, readable lines on a TTY.

Both outputs come from one event: the file gets every event as one JSON object per line
(what ``jq``/``tail -f`` and log shippers want), and the console, when it is a terminal or
asked for, gets structlog's coloured rendering of the same event.

Every tool call logs a line, so this is on the hot path. On the event loop, lines reach the
file once per loop iteration rather than one ``write(2)`` each (a heartbeat sweep logs tens of
thousands of lines; under load several calls end in one iteration); ``tail -f`` still sees a
line within the iteration that logged it. Nothing binds context variables, so structlog's
``merge_contextvars`` (a walk over every context variable, per line) is not in the chain.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import os
import sys
import threading
from pathlib import Path
from typing import IO, Any, TextIO

import structlog
from structlog.typing import EventDict, WrappedLogger

from coordinatord.log_scrub import scrub_event
from coordinatord.settings import LoggingSettings

_console_enabled = False

LOG_BUFFER_BYTES = 256 * 1024
"""Room for one loop iteration's lines before the buffer writes through by itself."""

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class _TeeLogger:
    """Writes the JSON rendering to the log file and the readable one to the console."""

    def __init__(self, file: IO[str] | None, console: TextIO | None) -> None:
        self._file = file
        self._console = console
        self._console_renderer = structlog.dev.ConsoleRenderer(
            colors=console is not None and console.isatty()
        )
        self._lock = threading.Lock()  # worker threads log too
        self._flush_scheduled = False

    def msg(self, line: str | None = None, **event: Any) -> None:
        """A rendered JSON ``line`` (no console: :func:`_render_json` made it), or the event's
        fields (a console too: both renderings come from them)."""
        if self._file is not None:
            if line is None:
                line = json.dumps(event, default=str, separators=(",", ":"))
            with self._lock:
                self._file.write(line + "\n")
                self._schedule_flush()
        if self._console is not None:
            self._console.write(str(self._console_renderer(None, "", dict(event))) + "\n")
            self._console.flush()

    debug = info = warning = warn = error = critical = exception = fatal = msg

    def _schedule_flush(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop in this thread (or it has ended): write through
            self._flush_file()
            return
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self.flush)

    def flush(self) -> None:
        with self._lock:
            self._flush_file()

    def _flush_file(self) -> None:
        self._flush_scheduled = False
        if self._file is not None and not self._file.closed:
            self._file.flush()


def _as_kwargs(_: WrappedLogger, __: str, event_dict: EventDict) -> dict[str, Any]:
    # Returning a dict makes structlog call the logger method with it as keyword arguments.
    return {**event_dict}


def _render_json(_: WrappedLogger, __: str, event_dict: EventDict) -> str:
    # Returning a string makes structlog call the logger method with it alone: one dumps, no
    # copy of the event into keyword arguments (every tool call logs a line).
    return json.dumps(event_dict, default=str, separators=(",", ":"))


def _format_exc_info(logger: WrappedLogger, name: str, event_dict: EventDict) -> EventDict:
    # structlog's processor looks for exception information in every event; only the few
    # events that carry exc_info (log.exception) need it.
    if "exc_info" in event_dict:
        return structlog.processors.format_exc_info(logger, name, event_dict)
    return event_dict


def configure(settings: LoggingSettings, log_file: Path | None, *, console: TextIO | None = None) -> None:
    """Configure structlog (and the stdlib ``logging`` that libraries use) for the daemon."""
    stream = console if console is not None else sys.stderr
    show_console = settings.console == "always" or (settings.console == "auto" and stream.isatty())
    global _console_enabled
    _console_enabled = show_console
    file: IO[str] | None = None
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        file = os.fdopen(fd, "a", encoding="utf-8", buffering=LOG_BUFFER_BYTES)
    level = LEVELS[settings.level]
    tee = _TeeLogger(file, stream if show_console else None)
    atexit.register(tee.flush)  # lines of a last loop iteration whose callbacks never ran
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _format_exc_info,
            scrub_event,  # a warned secret in an identifier never reaches the file (log_scrub.py)
            _as_kwargs if show_console else _render_json,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=lambda *_: tee,
        cache_logger_on_first_use=True,
    )
    # Libraries (mcp, redis) log through stdlib logging: route their warnings to the same place.
    handler = _StructlogHandler()
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(level, logging.WARNING))


class _StructlogHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        log = structlog.get_logger(record.name)
        fields: dict[str, Any] = {"logger": record.name}
        if record.exc_info:
            fields["exc_info"] = record.exc_info
        log.log(record.levelno, record.getMessage(), **fields)


def console_enabled() -> bool:
    """Whether events also go to the console (so a caller need not print them again)."""
    return _console_enabled
