"""``coordinatord status [--json] [--no-color] [--socket PATH]``: is the daemon up, and what is it doing.

Asks the daemon over its socket (control command ``status``) and prints a report: the daemon
(pid, uptime, version, its machine's clock against the backend's), the backend and its health,
connected shims, active agents and held locks per project (each project's id with where it came
from: ``.coordinatord.toml``, ``origin`` or the path, and a hint when an old path-hash
namespace's root has another id now), and each job's last run, outcome, counts and next run.
Exit code 0 when the daemon answers (even if its backend does not: the report says so), 1 when
no daemon answers.

When nothing answers on the socket, the daemon's locks say whether one runs all the same
(:mod:`coordinatord.daemon_locks`: ``<socket>.lock``, or the state dir's ``daemon.lock`` naming
this socket): its socket file was removed or replaced, or it is still starting. The report then
names its pid, what is at the socket path, what happens next and how to stop it (exit code 1).

On a terminal the report is coloured: green for what is healthy, red for what is not, yellow
for warnings (an incomplete project list, a pid a shim's preamble got wrong, a job another daemon
runs, a clock further from the backend's than ``daemon.max_clock_skew_s``); never when stdout
is not a terminal, with ``--no-color`` or with ``NO_COLOR`` set (https://no-color.org).
``--json`` is never coloured.

Standard library plus :mod:`coordinatord.control`, :mod:`coordinatord.paths` and
:mod:`coordinatord.words` and :mod:`coordinatord.daemon_locks` only: no
pydantic, no redis, no rich (plain ANSI codes), so the command answers in the time a Python
start takes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coordinatord import control, daemon_locks, paths
from coordinatord.errors import DaemonError
from coordinatord.words import duration, skew_words

TIMEOUT_S = 15.0

_GREEN, _RED, _YELLOW, _BOLD = "32", "31", "33", "1"


def main(args: argparse.Namespace) -> int:
    socket_path = paths.shim_socket_path(args.socket)
    try:
        result = control.request(socket_path, "status", timeout=TIMEOUT_S)
    except control.DaemonNotRunningError as exc:
        holder = daemon_locks.daemon_holding(socket_path, paths.shim_state_dir())
        if holder is not None:
            return _unreachable(args, socket_path, holder)
        return _down(args, socket_path, str(exc))
    except DaemonError as exc:
        return _down(args, socket_path, str(exc))
    if args.json:
        print(json.dumps({"running": True, **result}, indent=2))
    else:
        print(render(result, now=result.get("now") or time.time(), colour=wants_colour(args, sys.stdout)))
    return 0


def wants_colour(args: argparse.Namespace, out: Any) -> bool:
    """Colour only on a terminal, and not with --no-color, NO_COLOR (https://no-color.org) or a
    dumb terminal."""
    if getattr(args, "no_color", False) or os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return bool(out.isatty())
    except ValueError:  # closed
        return False


def _down(args: argparse.Namespace, socket_path: Path, message: str) -> int:
    default = paths.default_socket()
    note = paths.socket_note(socket_path, default)
    if args.json:
        shown = {"running": False, "socket": str(socket_path), "socket_folder": note, "error": message}
        print(json.dumps(shown, indent=2))
    if socket_path == default.path and default.unsafe is not None:
        message += f"\n(the socket is in {note})"
    print(f"coordinatord: {message}", file=sys.stderr)
    return 1


def _unreachable(args: argparse.Namespace, socket_path: Path, holder: daemon_locks.Holder) -> int:
    """A daemon holds the socket's lock, but nothing answers on the socket."""
    message = daemon_locks.unreachable(holder, socket_path)
    if args.json:
        report = {
            "running": True,
            "answering": False,
            "pid": holder.verified_pid() or holder.pid,
            "socket": str(socket_path),
            "socket_file": daemon_locks.socket_state(socket_path),
            "lock": str(holder.lock),
            "error": message,
        }
        print(json.dumps(report, indent=2))
    print(f"coordinatord: {message}", file=sys.stderr)
    return 1


def render(status: dict[str, Any], now: float, colour: bool = False) -> str:
    """The readable report for a ``status`` reply; ``colour``: with ANSI colours. ``now``: the
    reply's own (the daemon's clock, which its times are on)."""

    def paint(text: str, *codes: str) -> str:
        return f"\x1b[{';'.join(codes)}m{text}\x1b[0m" if colour else text

    lines: list[str] = []
    daemon = status.get("daemon", {})
    lines.append(
        f"coordinatord {daemon.get('version', '?')} {paint('is running', _BOLD, _GREEN)}: "
        f"pid {daemon.get('pid', '?')}, up {duration(daemon.get('uptime_s'))}"
    )
    lines.append(f"  socket    {daemon.get('socket', '?')}")
    folder = daemon.get("socket_folder") or {}
    if folder.get("note"):  # a daemon older than this field says nothing of it
        note = paint(folder["note"], _YELLOW) if folder.get("fallback") else folder["note"]
        lines.append(f"            {note}")
    if "config_file" in daemon:  # a daemon older than this field says nothing of it
        lines.append(f"  config    {daemon['config_file'] or 'no config file (defaults and environment)'}")
    lines.append(f"  daemon id {daemon.get('daemon_id', '?')}")
    clock = clock_line(daemon.get("clock"))
    if clock is not None:
        text, warn = clock
        lines.append(f"  clock     {paint(text, _BOLD, _YELLOW) if warn else text}")

    backend = status.get("backend", {})
    if backend.get("healthy"):
        health = paint("healthy", _GREEN) + f" (ping {backend.get('ping_ms', '?')} ms)"
    else:
        health = paint(f"UNHEALTHY: {backend.get('error', 'no answer')}", _BOLD, _RED)
    mode = backend.get("mode", "single")
    shown = backend.get("name", "?") + ("" if mode == "single" else f" (backend.mode = {mode})")
    lines += ["", f"backend   {shown}", f"  {health}"]

    connections = status.get("connections", [])
    lines += ["", f"connected shims: {len(connections)}"]
    for conn in connections:
        agent = conn.get("agent") or "(anonymous)"
        if conn.get("project") is None and ".coordinatord.toml" in str(conn.get("no_project")):
            where = paint(f"no project: {conn['no_project']}", _YELLOW)  # names the file to fix
        elif conn.get("project") is None:
            where = "no project" + (f" (shim started in {conn['cwd']})" if conn.get("cwd") else "")
        else:
            where = (
                conn["project"]
                + id_from(conn.get("id_source"))
                + (f"  {conn['root']}" if conn.get("root") else "")
            )
        lines.append(f"  {agent:<20} {where}  {_pid(conn, paint)}")

    lines += ["", *_projects(status.get("projects") or {}, paint)]

    lines += ["", "jobs:"]
    jobs = status.get("jobs", [])
    if not jobs:
        lines.append("  (none)")
    width = max((len(job.get("name", "")) for job in jobs), default=0)
    for job in jobs:
        lines.append(f"  {job.get('name', '?'):<{width}}  {_job(job, now, paint)}")
    return "\n".join(lines)


Paint = Callable[..., str]


def _pid(conn: dict[str, Any], paint: Paint) -> str:
    """``pid 123``, the kernel's; ``pid 123 (claims 456)`` when the preamble named another."""
    pid, claimed = conn.get("pid"), conn.get("claimed_pid")
    shown = f"pid {pid or '?'}"
    if claimed is not None and claimed != pid:
        shown += " " + paint(f"(claims {claimed})", _YELLOW)
    return shown


def _projects(projects: dict[str, Any], paint: Paint) -> list[str]:
    shown = projects.get("shown", [])
    total = projects.get("total")
    if total is None and not shown:
        reason = projects.get("error") or "the backend is not answering"
        return [paint(f"projects: unknown ({reason})", _RED)]
    head = f"projects: {total if total is not None else '?'}"
    if total is not None and len(shown) < total:
        head += f" (the {len(shown)} seen most recently shown)"
    lines = [head]
    if projects.get("error"):
        lines.append("  " + paint(f"(incomplete: {projects['error']})", _YELLOW))
    for project in shown:
        lines.append(f"  {project.get('project')}{id_from(project.get('id_source'))}  {project.get('root')}")
        lines += ["    " + paint(note, _YELLOW) for note in id_notes(project, str(project.get("project")))]
        agents = project.get("agents", [])
        active = project.get("active_agents", 0)
        lines.append(f"    active agents: {active}")
        for agent in agents:
            notes = []
            if agent.get("connected"):
                notes.append("connected")
            if agent.get("idle_s") is not None:
                notes.append(f"last heartbeat {duration(agent['idle_s'])} ago")
            lines.append(f"      {agent.get('agent')}" + (f"  ({', '.join(notes)})" if notes else ""))
        if active > len(agents):
            lines.append(f"      … and {active - len(agents)} more")
        locks = project.get("locks", [])
        held = project.get("held_locks", 0)
        lines.append(f"    held locks: {held}")
        for lock in locks:
            left = lock.get("expires_in")
            lease = "no expiry" if left is None else f"{duration(left)} left"
            lines.append(
                f"      {lock.get('resource')}  by {lock.get('held_by')}  "
                f"(fencing {lock.get('fencing')}, {lease})"
            )
        if held > len(locks):
            lines.append(f"      … and {held - len(locks)} more")
    return lines


def clock_line(clock: dict[str, Any] | None) -> tuple[str, bool] | None:
    """What ``status`` and ``top`` say of the daemon's clock against the backend's (the reply's
    ``daemon.clock``), and whether it is a warning; None when the reply has none."""
    if not clock:
        return None
    skew = clock.get("skew_s")
    if not clock.get("anchored") or not isinstance(skew, int | float):
        reason = clock.get("error") or "no answer yet"
        return f"the backend's time not read yet ({reason}); this machine's clock stands in", True
    if clock.get("skewed"):
        return (
            f"this machine's clock is {skew_words(skew)} (over daemon.max_clock_skew_s = "
            f"{clock.get('max_skew_s', '?')} s): expiries use the backend's; sync this machine's "
            "(timedatectl set-ntp true)",
            True,
        )
    return f"within {abs(skew):.2f} s of the backend's", False


def id_from(source: Any) -> str:
    """`` (from origin)``: where a project id came from, for the line that shows the id."""
    if source == "path":
        return " (from its path)"
    return f" (from {source})" if isinstance(source, str) and source else ""


def id_notes(project: dict[str, Any], project_id: str) -> list[str]:
    """What to tell about a project's id beyond its source: its root resolves to another id now
    (and how to move the keys there), or to none (a wrong .coordinatord.toml)."""
    notes = []
    moved = project.get("resolves_to")
    if moved:
        notes.append(
            f"its root is project {moved} now; move these keys there with: "
            f"coordinatord projects migrate {project_id} {moved}"
        )
    if project.get("id_problem"):
        notes.append(f"its root has no project id now: {project['id_problem']}")
    return notes


def _job(job: dict[str, Any], now: float, paint: Paint) -> str:
    parts = [f"every {duration(job.get('interval_s'))}"]
    started = job.get("last_started")
    outcome = job.get("last_outcome")
    if started is None and outcome is None:
        parts.append("not run yet")
    elif outcome == "not_leader":
        parts.append(paint("last tick: another daemon is the leader", _YELLOW))
    else:
        ago = duration(now - started) + " ago" if started is not None else "?"
        took_ms = job.get("last_duration_ms")
        took = f" in {took_ms:.1f} ms" if isinstance(took_ms, int | float) else ""
        shown = paint(str(outcome), _GREEN if outcome == "ok" else _RED)
        text = f"last run {ago}: {shown}{took}"
        counts = job.get("last_counts") or {}
        if counts:
            text += " (" + ", ".join(f"{k} {v}" for k, v in counts.items()) + ")"
        if job.get("last_error"):
            text += ": " + paint(str(job["last_error"]), _RED)
        parts.append(text)
    next_run = job.get("next_run")
    parts.append(f"next in {duration(max(0.0, next_run - now))}" if next_run is not None else "not scheduled")
    return "; ".join(parts)
