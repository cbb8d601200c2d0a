"""``coordinatord tail``: a project's activity, read straight from its Redis stream.

It asks no daemon: it loads the same settings the daemon would (``--config``, environment,
``REDIS_URL``, ``UPSTASH_REDIS_REST_*``) to find the backend — Upstash REST, the configured URL,
or the embedded Valkey's Unix socket in the state dir — and reads through the same store the
daemon writes with (:mod:`coordinatord.store`: timeouts, retries, TLS and error messages alike),
so it works from any machine that can reach a shared backend. The project is a root directory (as
a shim would be given it, its id found the way the daemon finds it: ``.coordinatord.toml``,
``origin``, or the path) or a project id; by default the git root of the cwd. On a terminal, a
first line on stderr names the project, where its id came from and the backend.

It prints the newest ``-n`` events, then with ``--follow`` polls ``XREAD`` (no ``BLOCK``: not every
backend has blocking reads) from the last id it printed, pausing briefly between empty polls.
One readable line per event, coloured on a terminal; ``--json`` prints one object per line.
Exit codes: 0 (including Ctrl-C and SIGTERM), 1 backend unreachable, 2 bad settings or arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from datetime import datetime, tzinfo
from pathlib import Path
from types import FrameType
from typing import IO, Any

import anyio

from coordinatord.backend_url import mask as mask_url
from coordinatord.commands.status import id_from
from coordinatord.errors import BackendError, BackendUnavailableError, ConfigError
from coordinatord.identity.rules import is_project_id
from coordinatord.keyspace import ACTIVITY_STREAM, Namespace
from coordinatord.paths import find_project_root, not_a_project
from coordinatord.scope import project_ref
from coordinatord.services.activity import CONNECTION_KIND, event_from_fields
from coordinatord.services.shared import iso_timestamp
from coordinatord.settings import Settings, load_settings
from coordinatord.store import RedisStore, Store
from coordinatord.store.embedded import embedded_socket_path

POLL_INTERVAL_S = 0.25
"""Pause after a poll that found nothing (pacing: the daemon writes events in batches anyway)."""
RETRY_MAX_S = 2.0
"""Longest pause between polls while the backend is unreachable during ``--follow``."""
READ_COUNT = 500
"""Entries per XREAD/XREVRANGE round trip."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

# ANSI SGR codes; no dependency needed for a handful of colours.
_RESET = "\x1b[0m"
_DIM, _BOLD = "2", "1"
_RED, _GREEN, _YELLOW, _BLUE, _MAGENTA, _CYAN = "31", "32", "33", "34", "35", "36"
_OUTCOME_COLOURS = {"ok": _GREEN, "refused": _YELLOW, "backend_error": _RED, "internal_error": _RED}


class TailError(Exception):
    """A problem the user can fix; ``code`` is the exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def main(args: argparse.Namespace) -> int:
    # SIGTERM (a supervisor, a test) ends the tail as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    out = sys.stdout
    try:
        try:
            return _run(args, out)
        except TailError as exc:
            sys.stderr.write(f"coordinatord tail: {exc}\n")
            return exc.code
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        # The reader went away (`tail | head`): nothing more to say, and nothing to flush at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
        os.close(devnull)
        return 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _run(args: argparse.Namespace, out: IO[str]) -> int:
    if args.lines < 0:
        raise TailError(f"-n/--lines must be 0 or more, got {args.lines}", 2)
    try:
        settings = load_settings(
            {"socket": args.socket, "state_dir": args.state_dir}, config_file=args.config
        )
    except ConfigError as exc:
        raise TailError(str(exc), 2) from None
    project_id, root, source = resolve_project(args.project, Path.cwd())
    store, backend_name = open_reader(settings)
    key = Namespace(project_id).key(ACTIVITY_STREAM)
    colour = not args.json and _wants_colour(out)
    if sys.stderr.isatty():
        shown = f"{project_id}{id_from(source)}" + (f" at {root}" if root else "")
        sys.stderr.write(f"activity of project {shown} on {backend_name}\n")

    def emit(events: list[dict[str, Any]]) -> None:
        for event in events:
            if args.agent is None or event["agent"] == args.agent:
                out.write((format_json(event) if args.json else format_line(event, colour=colour)) + "\n")
        out.flush()

    async def read() -> None:
        try:
            events, last_id = await last_events(store, key, args.lines, args.agent)
            emit(events)
            if args.follow:
                async for batch in follow(store, key, last_id, backend_name):
                    emit(batch)
        except BackendUnavailableError as exc:
            # Unreachable at the start (follow() waits out a backend lost later), or what the
            # store names: a missing password, a database the server does not have.
            raise TailError(str(exc), 1) from None
        except BackendError as exc:
            # Refused: e.g. the key is not a stream.
            raise TailError(f"the backend {backend_name} refused to read {key}: {exc}", 1) from None
        finally:
            await store.aclose()

    anyio.run(read)
    return 0


def resolve_project(value: str | None, cwd: Path) -> tuple[str, str | None, str | None]:
    """The project id to read, its root when known, and where the id came from.

    ``value`` is a directory (taken as the root exactly as a shim's ``--project`` is), or a
    project id such as ``github.com/org/app`` or ``app-3f2a9c1d0b`` (what the daemon's log and
    ``status`` show); by default the git root of ``cwd``, as the shim finds it.
    """
    if value is None:
        found = find_project_root(cwd)
        if found is None:
            raise TailError(f"{not_a_project(cwd)}; run tail there, or name it with --project DIR_OR_ID", 2)
        return _of_root(str(found))
    path = (cwd / value).expanduser()
    if path.is_dir():
        return _of_root(str(path))
    if is_project_id(value):
        return value, None, None
    raise TailError(f"--project {value!r} is neither a directory nor a project id", 2)


def _of_root(root: str) -> tuple[str, str, str]:
    try:
        ref = project_ref(root)
    except ConfigError as exc:  # a wrong .coordinatord.toml: the daemon would give it no project
        raise TailError(str(exc), 2) from None
    return ref.project_id, ref.root, ref.source


def open_reader(settings: Settings) -> tuple[Store, str]:
    """The store to read from (the backend the daemon writes to) and how to name it."""
    backend = settings.backend
    if backend.upstash_url:
        # The daemon writes to Upstash when it is configured (it wins over REDIS_URL): reading
        # REDIS_URL would show another database's events.
        from coordinatord.store.upstash import UpstashStore

        if not backend.upstash_token.get_secret_value():
            raise TailError(
                "backend.upstash_url (UPSTASH_REDIS_REST_URL) is set but backend.upstash_token "
                "(UPSTASH_REDIS_REST_TOKEN) is empty; set the token, or unset the URL",
                2,
            )
        try:
            upstash = UpstashStore.from_settings(backend)
        except ConfigError as exc:
            raise TailError(str(exc), 2) from None
        return upstash, upstash.name
    url, backend_name, store_name = backend_url(settings)
    return RedisStore.from_url(url, backend, name=store_name), backend_name


def backend_url(settings: Settings) -> tuple[str, str, str]:
    """The Redis URL to read from, how to name it to the user, and how the store names it in
    its messages (passwords masked)."""
    url = settings.backend.url.get_secret_value()
    if url:
        return url, mask_url(url), mask_url(url)
    socket_path = embedded_socket_path(settings.state_dir)
    if not socket_path.exists():
        raise TailError(
            f"the daemon's embedded backend is not running (no socket {socket_path}); start it with "
            "`coordinatord serve`, pass the daemon's --state-dir, or set REDIS_URL for a shared Redis",
            1,
        )
    name = f"embedded valkey-server at {socket_path}"
    return f"unix://{socket_path}", f"the {name}", name


async def last_events(
    store: Store, key: str, count: int, agent: str | None
) -> tuple[list[dict[str, Any]], str]:
    """The newest ``count`` events (of ``agent``), oldest first, and the stream's newest id.

    Following starts after that id whatever the filter, so nothing is shown twice; an empty
    stream gives ``0-0``, so its first event is shown.
    """
    wanted: list[dict[str, Any]] = []
    newest = "0-0"
    upper = "+"
    page_size = max(READ_COUNT, count) if agent is not None else max(count, 1)
    while True:
        page = await store.xrevrange(key, upper, "-", page_size)
        if not page:
            break
        if newest == "0-0":
            newest = page[0][0]
        for entry_id, fields in page:
            if len(wanted) == count:
                break
            event = event_from_fields(entry_id, fields)
            if agent is None or event["agent"] == agent:
                wanted.append(event)
        if len(wanted) == count or len(page) < page_size:
            break
        upper = "(" + page[-1][0]
    wanted.reverse()
    return wanted, newest


async def follow(
    store: Store,
    key: str,
    last_id: str,
    backend_name: str,
) -> AsyncIterator[list[dict[str, Any]]]:
    """Every new event after ``last_id``, batch by batch, until interrupted.

    A backend that goes away (a daemon restarting its embedded Valkey, a network blip) is waited
    for, with one line on stderr when it goes and one when it is back.
    """
    pause = POLL_INTERVAL_S
    lost = False
    while True:
        try:
            entries = await store.xread(key, last_id, READ_COUNT)
        except BackendUnavailableError as exc:
            if not lost:
                sys.stderr.write(f"coordinatord tail: lost the backend {backend_name} ({exc}); retrying\n")
                lost = True
            await anyio.sleep(pause)
            pause = min(pause * 2, RETRY_MAX_S)
            continue
        if lost:
            sys.stderr.write("coordinatord tail: backend reachable again\n")
            lost = False
        pause = POLL_INTERVAL_S
        if entries:
            last_id = entries[-1][0]
            yield [event_from_fields(entry_id, fields) for entry_id, fields in entries]
        if len(entries) < READ_COUNT:
            await anyio.sleep(POLL_INTERVAL_S)


# -- output --------------------------------------------------------------------------------


def format_json(event: dict[str, Any]) -> str:
    """One event as a JSON line: the stream id, ``ts`` in ISO 8601 and the event's fields."""
    ts = event.get("ts")
    shown = {**event, "ts": iso_timestamp(ts) if isinstance(ts, float) else None}
    return json.dumps(shown, ensure_ascii=False, separators=(",", ":"))


def format_line(event: dict[str, Any], *, colour: bool, tz: tzinfo | None = None) -> str:
    """One event as a readable line: time, agent, kind and name, outcome, duration, key.

    The key comes last because it is the one column of unbounded width; a connection event
    (kind shown as ``conn``) has the peer there instead: ``pid 123 uid 1000``, and
    ``(claims 456)`` when its preamble named another pid. Control characters in any field are
    escaped, so an odd key or agent name cannot drive the terminal.
    """
    ts = event.get("ts")
    when = (
        datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        if isinstance(ts, float)
        else "-" * 23
    )
    agent = _clean(event.get("agent") or "-")
    kind = _clean(event.get("kind") or "?")
    name = _clean(event.get("name") or "?")
    outcome = _clean(event.get("outcome") or "?")
    duration = event.get("duration_ms")
    took = f"{duration:.1f} ms" if isinstance(duration, float) else "-"
    key = _clean(event.get("key") or "-")
    if kind == CONNECTION_KIND:
        kind, key = "conn", _peer(event)

    def paint(text: str, *codes: str) -> str:
        return f"\x1b[{';'.join(codes)}m{text}{_RESET}" if colour and codes else text

    job = kind == "job"
    outcome_colour = _MAGENTA if job else _OUTCOME_COLOURS.get(outcome, _RED)
    return "  ".join(
        (
            paint(when, _DIM),
            paint(f"{agent:<12}", _BOLD, _CYAN),
            paint(f"{kind:<4} {name:<20}", _MAGENTA if job else _BLUE),
            paint(f"{outcome:<16}", outcome_colour),
            f"{took:>9}",
            key,
        )
    )


def _peer(event: dict[str, Any]) -> str:
    pid, uid, claimed = event.get("peer_pid"), event.get("peer_uid"), event.get("claimed_pid")
    shown = f"pid {pid if pid is not None else '?'} uid {uid if uid is not None else '?'}"
    if claimed is not None and claimed != pid:
        shown += f" (claims {claimed})"
    return shown


def _clean(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _wants_colour(out: IO[str]) -> bool:
    # https://no-color.org; a dumb terminal shows escape codes as garbage.
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return out.isatty()
    except ValueError:
        return False
