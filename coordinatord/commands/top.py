"""``coordinatord top [--project DIR_OR_ID | --all] [--once] [--interval S] [--no-color]``.

A live view of one project (by default the one holding the current directory, as ``tail`` and
``sessions`` find it) or of every known one, under a warning when the daemon's machine's clock is
further from the backend's than ``daemon.max_clock_skew_s``: its id and where the id came from
(``.coordinatord.toml``, ``origin`` or its path), agents and their last heartbeat, held locks and
the time left on them, tasks with a progress bar, rate-limit budgets, the latest activity.

It asks the daemon once per ``--interval`` (control command ``overview``, see
:mod:`coordinatord.control.overview`) and draws the frame with rich. ``q`` (or Ctrl-C, or
SIGTERM) quits; keys are read from stdin in cbreak mode, and the terminal's modes are put back
on the way out, whatever ends it. When stdin is not a terminal, no key is read (Ctrl-C and
SIGTERM still stop it). When stdout is not a terminal, or with ``--once``, it prints one frame
and exits: 0, or 1 when no daemon answers (naming how to start one). A live view whose daemon
goes away says so in the frame and keeps asking.

rich is imported by this command only: ``status`` and the other operator commands stay on the
standard library.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import select
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from coordinatord import control, paths
from coordinatord.commands.archive import fail, project_arg
from coordinatord.commands.status import clock_line, id_from, id_notes
from coordinatord.errors import DaemonError
from coordinatord.words import duration

TIMEOUT_S = 10.0
MIN_INTERVAL_S = 0.1
WIDE = 72
"""From this many columns on, the frame shows the secondary columns (current task, fencing,
current step, the activity's key)."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_OUTCOME_STYLES = {"ok": "green", "refused": "yellow", "backend_error": "red", "internal_error": "red"}
_TASK_STYLES = {
    "completed": "green",
    "in_progress": "cyan",
    "pending": "default",
    "blocked": "yellow",
    "failed": "red",
}


def main(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    if args.interval < MIN_INTERVAL_S:
        print(f"coordinatord top: --interval must be at least {MIN_INTERVAL_S:g} s", file=sys.stderr)
        return 2
    socket_path = paths.shim_socket_path(args.socket)
    if args.all:
        request: dict[str, Any] = {"all": True}
    elif args.project:
        request = {"project": project_arg(args.project)}
    elif (found := paths.find_project_root(Path.cwd())) is not None:
        request = {"project": str(found)}
    else:
        print(
            f"coordinatord top: {paths.not_a_project(Path.cwd())}; run it in the project, or give "
            "--project DIR_OR_ID or --all",
            file=sys.stderr,
        )
        return 2
    colour = not args.no_color and not os.environ.get("NO_COLOR")
    console = Console(no_color=not colour, highlight=False, soft_wrap=False)
    try:
        if args.once or not console.is_terminal:
            return _once(console, socket_path, request)
        return _live(console, socket_path, request, args.interval)
    except KeyboardInterrupt:
        return 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _once(console: Console, socket_path: Path, request: dict[str, Any]) -> int:
    try:
        overview = control.request(socket_path, "overview", request, timeout=TIMEOUT_S)
    except DaemonError as exc:
        return fail(str(exc))
    console.print(render(overview, width=console.width))
    return 0


def _live(console: Console, socket_path: Path, request: dict[str, Any], interval: float) -> int:
    keys = KeyReader(sys.stdin)
    with keys, Live(console=console, screen=True, auto_refresh=False, redirect_stderr=False) as live:
        while True:
            started = time.monotonic()
            try:
                overview = control.request(socket_path, "overview", request, timeout=TIMEOUT_S)
                frame = render(overview, width=console.width, height=console.height, interval=interval)
            except DaemonError as exc:
                frame = render_down(str(exc), width=console.width, interval=interval)
            live.update(frame, refresh=True)
            if keys.quit_before(started + interval):
                return 0


class KeyReader:
    """``q`` on a terminal's stdin, read in cbreak mode (no Enter needed, Ctrl-C still a
    signal); the terminal's modes are restored on exit. On a stdin that is not a terminal it
    reads nothing and only waits."""

    def __init__(self, stream: Any) -> None:
        self._fd: int | None = None
        self._saved: list[Any] | None = None
        try:
            if stream is not None and stream.isatty():
                self._fd = stream.fileno()
        except (ValueError, OSError):
            self._fd = None

    def __enter__(self) -> KeyReader:
        if self._fd is not None:
            import termios
            import tty

            try:
                self._saved = termios.tcgetattr(self._fd)
                tty.setcbreak(self._fd)
            except termios.error:
                self._fd = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None and self._saved is not None:
            import termios

            with contextlib.suppress(termios.error):
                termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
            self._saved = None

    def quit_before(self, deadline: float) -> bool:
        """Wait until ``deadline`` (``time.monotonic()``); True as soon as ``q`` is pressed."""
        while (left := deadline - time.monotonic()) > 0:
            if self._fd is None:
                time.sleep(left)
                return False
            ready, _, _ = select.select([self._fd], [], [], left)
            if not ready:
                return False
            try:
                data = os.read(self._fd, 64)
            except OSError:
                data = b""
            if not data:  # the terminal hung up: stop reading it
                self._fd = None
                continue
            if b"q" in data.lower():
                return True
        return False


# -- the frame ------------------------------------------------------------------------------


def render(
    overview: dict[str, Any],
    *,
    width: int = 80,
    height: int | None = None,
    interval: float | None = None,
) -> RenderableType:
    """The frame for an ``overview`` reply; pure (the time shown is the reply's ``now``).

    ``height``: the live view fits the rows to the terminal; without it every row the daemon
    sent is shown. ``interval``: the live view's footer says how often it refreshes and that
    ``q`` quits.
    """
    now = overview.get("now") or time.time()
    wide = width >= WIDE
    projects = overview.get("projects") or []
    parts: list[RenderableType] = [_header(overview, now, width)]
    clock = clock_line((overview.get("daemon") or {}).get("clock"))
    warned = clock is not None and clock[1]
    if clock is not None and warned:
        # One line (cut to the width): `status` says it in full.
        parts.append(
            Text(f"clock: {_clean(clock[0])}", style="bold yellow", no_wrap=True, overflow="ellipsis")
        )
    if overview.get("error"):
        parts.append(Text(f"backend error: {_clean(overview['error'])}", style="red"))
    rows = None
    if height is not None:
        # The header (2 lines), a footer, per project a title, 5 part headings and 5 table
        # headers: what is left is shared among the parts' rows.
        fixed = 3 + int(warned) + max(1, len(projects)) * 11
        rows = max(1, (height - fixed) // (5 * max(1, len(projects))))
    for project in projects:
        parts.append(_project(project, now, wide, rows, several=len(projects) > 1))
    if overview.get("more"):
        more = overview["more"]
        parts.append(Text(f"+{more} more projects (the most recently seen are shown)", style="dim"))
    if not projects and not overview.get("error"):
        parts.append(Text("no known project (projects become known when a shim connects from them)"))
    if interval is not None:
        parts.append(Text(f"refreshing every {interval:g} s; q quits", style="dim"))
    return Group(*parts)


def render_down(message: str, *, width: int = 80, interval: float = 1.0) -> RenderableType:
    """The live view's frame while no daemon answers."""
    title = Table.grid(expand=True, padding=(0, 1))
    title.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
    title.add_column(justify="right", no_wrap=True)
    title.add_row(Text("coordinatord top", style="bold"), Text(datetime.now().strftime("%H:%M:%S")))
    return Group(
        title,
        Text(""),
        Text("\n".join(_clean(line) for line in message.splitlines()), style="red"),
        Text(""),
        Text(f"retrying every {interval:g} s; q quits", style="dim"),
    )


def _header(overview: dict[str, Any], now: float, width: int) -> RenderableType:
    daemon = overview.get("daemon") or {}
    projects = overview.get("projects") or []
    if len(projects) == 1 and overview.get("total", 1) == 1:
        only = projects[0]
        what = f"project {only.get('project_id')}{id_from(only.get('id_source'))}  {only.get('root')}"
    else:
        what = f"{overview.get('total', len(projects))} projects"
    title = Table.grid(expand=True, padding=(0, 1))
    title.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
    title.add_column(justify="right", no_wrap=True)
    title.add_row(
        Text.assemble(("coordinatord top", "bold"), "  ", _clean(what)),
        Text(datetime.fromtimestamp(now).strftime("%H:%M:%S")),
    )
    connections = daemon.get("connections", 0)
    shims = f"{connections} shim{'s' if connections != 1 else ''} connected"
    line = Text(
        f"daemon {daemon.get('version', '?')} pid {daemon.get('pid', '?')}, up "
        f"{duration(daemon.get('uptime_s'))}, {shims}; {_clean(str(daemon.get('backend', '?')))}",
        style="dim",
        no_wrap=True,
        overflow="ellipsis",
    )
    return Group(title, line)


def _project(
    project: dict[str, Any], now: float, wide: bool, rows: int | None, *, several: bool
) -> RenderableType:
    parts: list[RenderableType] = [Text("")]
    if several:
        parts.append(
            Text.assemble(
                (_clean(str(project.get("project_id"))), "bold"),
                _clean(id_from(project.get("id_source"))),
                "  ",
                _clean(str(project.get("root"))),
                no_wrap=True,
                overflow="ellipsis",
            )
        )
    if project.get("error"):
        parts.append(Text(f"incomplete: {_clean(project['error'])}", style="yellow"))
    for note in id_notes(project, str(project.get("project_id"))):
        parts.append(Text(_clean(note), style="yellow"))
    parts += [
        *_agents(project.get("agents") or {}, wide, rows),
        *_locks(project.get("locks") or {}, wide, rows),
        *_tasks(project.get("tasks") or {}, wide, rows),
        *_ratelimits(project.get("ratelimits") or {}, rows),
        *_activity(project.get("activity") or {}, now, wide, rows),
    ]
    return Group(*parts)


def _table(*columns: str) -> Table:
    table = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0), show_edge=False)
    for name in columns:
        table.add_column(name, no_wrap=True, overflow="ellipsis", header_style="dim")
    return table


def _heading(title: str, summary: str) -> Text:
    return Text.assemble((title, "bold underline"), f"  {summary}")


def _cut(part: dict[str, Any], rows: int | None) -> tuple[list[dict[str, Any]], int]:
    """The rows to show, and how many are left out (by the daemon and here)."""
    listed = list(part.get("rows") or [])
    more = int(part.get("more") or 0)
    if rows is not None and len(listed) > rows:
        keep = max(1, rows - 1)  # the "+N more" line takes a row
        more += len(listed) - keep
        listed = listed[:keep]
    return listed, more


def _more(table: Table, more: int) -> None:
    if more:
        table.add_row(Text(f"+{more} more", style="dim"))


def _agents(part: dict[str, Any], wide: bool, rows: int | None) -> list[RenderableType]:
    listed, more = _cut(part, rows)
    heading = _heading("Agents", f"{part.get('active', 0)} active, {part.get('known', 0)} known")
    if not listed:
        return [heading, Text("  (none)", style="dim")]
    table = _table("AGENT", "STATUS", "HEARTBEAT", *(("TASK",) if wide else ()))
    for agent in listed:
        status = str(agent.get("status") or "?")
        shown = Text(status, style="green" if status == "active" else "yellow")
        if agent.get("connected"):
            shown.append(" (conn)" if not wide else " (connected)", style="dim")
        idle = agent.get("idle_s")
        beat = "never" if idle is None else f"{duration(idle)} ago"
        cells = [Text(_clean(str(agent.get("agent")))), shown, Text(beat)]
        if wide:
            cells.append(Text(_clean(str(agent.get("current_task") or "-"))))
        table.add_row(*cells)
    _more(table, more)
    return [heading, table]


def _locks(part: dict[str, Any], wide: bool, rows: int | None) -> list[RenderableType]:
    listed, more = _cut(part, rows)
    heading = _heading("Locks", f"{part.get('held', 0)} held")
    if not listed:
        return [heading, Text("  (none)", style="dim")]
    table = _table("RESOURCE", "HOLDER", "LEFT", *(("FENCING",) if wide else ()))
    for lock in listed:
        left = lock.get("expires_in")
        cells = [
            Text(_clean(str(lock.get("resource")))),
            Text(_clean(str(lock.get("held_by")))),
            Text("no expiry" if left is None else duration(left)),
        ]
        if wide:
            cells.append(Text(str(lock.get("fencing") if lock.get("fencing") is not None else "-")))
        table.add_row(*cells)
    _more(table, more)
    return [heading, table]


def _tasks(part: dict[str, Any], wide: bool, rows: int | None) -> list[RenderableType]:
    listed, more = _cut(part, rows)
    heading = _heading("Tasks", f"{part.get('total', 0)}")
    if not listed:
        return [heading, Text("  (none)", style="dim")]
    table = _table("TASK", "STATUS", "PROGRESS", "", *(("STEP",) if wide else ()))
    table.columns[2].width = 20 if wide else 10
    for task in listed:
        total = int(task.get("totalSteps") or 0)
        done = int(task.get("completedSteps") or 0)
        status = str(task.get("status") or "?")
        style = _TASK_STYLES.get(status, "default")
        bar = ProgressBar(
            total=max(total, 1),
            completed=done,
            width=20 if wide else 10,
            complete_style=style if style != "default" else "cyan",
            finished_style="green",
        )
        cells: list[RenderableType] = [
            Text(_clean(str(task.get("taskId")))),
            Text(status, style=style),
            bar,
            Text(f"{done}/{total} {task.get('percentComplete', 0)}%"),
        ]
        if wide:
            cells.append(Text(_clean(str(task.get("currentStep") or "-"))))
        table.add_row(*cells)
    _more(table, more)
    return [heading, table]


def _ratelimits(part: dict[str, Any], rows: int | None) -> list[RenderableType]:
    listed, more = _cut(part, rows)
    heading = _heading("Rate limits", f"{part.get('total', 0)}")
    if not listed:
        return [heading, Text("  (none used through this daemon)", style="dim")]
    table = _table("SERVICE", "WINDOW", "BUDGET", "")
    table.columns[2].width = 10
    for budget in listed:
        limit = int(budget.get("limit") or 0)
        used = int(budget.get("used") or 0)
        style = "red" if used >= limit else "yellow" if used >= 0.8 * limit else "green"
        table.add_row(
            Text(_clean(str(budget.get("service")))),
            Text(duration(budget.get("window_s"))),
            ProgressBar(total=max(limit, 1), completed=min(used, limit), width=10, complete_style=style),
            Text(f"{used}/{limit}", style=style),
        )
    _more(table, more)
    return [heading, table]


def _activity(part: dict[str, Any], now: float, wide: bool, rows: int | None) -> list[RenderableType]:
    events = list(part.get("rows") or [])
    if rows is not None:
        events = events[-rows:]  # the newest
    heading = Text("Activity", style="bold underline")
    if not events:
        return [heading, Text("  (none)", style="dim")]
    table = _table("TIME", "AGENT", "WHAT", "OUTCOME", *(("KEY",) if wide else ()))
    table.columns[0].min_width = 8
    for event in events:
        ts = event.get("ts")
        when = datetime.fromtimestamp(ts).strftime("%H:%M:%S") if isinstance(ts, int | float) else "-"
        kind = {"connection": "conn"}.get(str(event.get("kind")), str(event.get("kind") or "?"))
        outcome = str(event.get("outcome") or "?")
        style = "magenta" if kind == "job" else _OUTCOME_STYLES.get(outcome, "red")
        cells = [
            Text(when, style="dim"),
            Text(_clean(str(event.get("agent") or "-"))),
            Text(_clean(f"{kind} {event.get('name') or '?'}")),
            Text(_clean(outcome), style=style),
        ]
        if wide:
            cells.append(Text(_clean(str(event.get("key") or "-"))))
        table.add_row(*cells)
    return [heading, table]


def _clean(text: str) -> str:
    """Control characters escaped, so an odd name cannot drive the terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def frame_text(overview: dict[str, Any], *, width: int = 80, colour: bool = False) -> str:
    """The frame as text, as ``--once`` prints it (for tests and scripts)."""
    import io

    out = io.StringIO()
    console = Console(
        file=out, width=width, no_color=not colour, force_terminal=colour, highlight=False, soft_wrap=False
    )
    console.print(render(overview, width=width))
    return out.getvalue()
