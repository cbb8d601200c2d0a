"""``coordinatord status [--json] [--socket PATH]``: is the daemon up, and what is it doing.

Asks the daemon over its socket (control command ``status``) and prints a report: the daemon
(pid, uptime, version), the backend and its health, connected shims, active agents and held
locks per project, and each job's last run, outcome, counts and next run. Exit code 0 when the
daemon answers (even if its backend does not: the report says so), 1 when no daemon answers.

Standard library plus :mod:`coordinatord.control` and :mod:`coordinatord.paths` only: no
pydantic, no redis, so the command answers in the time a Python start takes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from coordinatord import control, paths
from coordinatord.errors import DaemonError

TIMEOUT_S = 15.0


def main(args: argparse.Namespace) -> int:
    socket_path = paths.shim_socket_path(args.socket)
    try:
        result = control.request(socket_path, "status", timeout=TIMEOUT_S)
    except DaemonError as exc:
        return _down(args, str(socket_path), str(exc))
    if args.json:
        print(json.dumps({"running": True, **result}, indent=2))
    else:
        print(render(result, now=time.time()))
    return 0


def _down(args: argparse.Namespace, socket_path: str, message: str) -> int:
    if args.json:
        print(json.dumps({"running": False, "socket": socket_path, "error": message}, indent=2))
    print(f"coordinatord: {message}", file=sys.stderr)
    return 1


def render(status: dict[str, Any], now: float) -> str:
    """The readable report for a ``status`` reply."""
    lines: list[str] = []
    daemon = status.get("daemon", {})
    lines.append(
        f"coordinatord {daemon.get('version', '?')} is running: pid {daemon.get('pid', '?')}, "
        f"up {duration(daemon.get('uptime_s'))}"
    )
    lines.append(f"  socket    {daemon.get('socket', '?')}")
    lines.append(f"  daemon id {daemon.get('daemon_id', '?')}")

    backend = status.get("backend", {})
    if backend.get("healthy"):
        health = f"healthy (ping {backend.get('ping_ms', '?')} ms)"
    else:
        health = f"UNHEALTHY: {backend.get('error', 'no answer')}"
    lines += ["", f"backend   {backend.get('name', '?')}", f"  {health}"]

    connections = status.get("connections", [])
    lines += ["", f"connected shims: {len(connections)}"]
    for conn in connections:
        agent = conn.get("agent") or "(anonymous)"
        if conn.get("project") is None:
            where = "no project" + (f" (shim started in {conn['cwd']})" if conn.get("cwd") else "")
        else:
            where = conn["project"] + (f"  {conn['root']}" if conn.get("root") else "")
        lines.append(f"  {agent:<20} {where}  {_pid(conn)}")

    lines += ["", *_projects(status.get("projects") or {})]

    lines += ["", "jobs:"]
    jobs = status.get("jobs", [])
    if not jobs:
        lines.append("  (none)")
    width = max((len(job.get("name", "")) for job in jobs), default=0)
    for job in jobs:
        lines.append(f"  {job.get('name', '?'):<{width}}  {_job(job, now)}")
    return "\n".join(lines)


def _pid(conn: dict[str, Any]) -> str:
    """``pid 123``, the kernel's; ``pid 123 (claims 456)`` when the preamble named another."""
    pid, claimed = conn.get("pid"), conn.get("claimed_pid")
    shown = f"pid {pid or '?'}"
    if claimed is not None and claimed != pid:
        shown += f" (claims {claimed})"
    return shown


def _projects(projects: dict[str, Any]) -> list[str]:
    shown = projects.get("shown", [])
    total = projects.get("total")
    if total is None and not shown:
        reason = projects.get("error") or "the backend is not answering"
        return [f"projects: unknown ({reason})"]
    head = f"projects: {total if total is not None else '?'}"
    if total is not None and len(shown) < total:
        head += f" (the {len(shown)} seen most recently shown)"
    lines = [head]
    if projects.get("error"):
        lines.append(f"  (incomplete: {projects['error']})")
    for project in shown:
        lines.append(f"  {project.get('project')}  {project.get('root')}")
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


def _job(job: dict[str, Any], now: float) -> str:
    parts = [f"every {duration(job.get('interval_s'))}"]
    started = job.get("last_started")
    outcome = job.get("last_outcome")
    if started is None and outcome is None:
        parts.append("not run yet")
    elif outcome == "not_leader":
        parts.append("last tick: another daemon is the leader")
    else:
        ago = duration(now - started) + " ago" if started is not None else "?"
        took_ms = job.get("last_duration_ms")
        took = f" in {took_ms:.1f} ms" if isinstance(took_ms, int | float) else ""
        text = f"last run {ago}: {outcome}{took}"
        counts = job.get("last_counts") or {}
        if counts:
            text += " (" + ", ".join(f"{k} {v}" for k, v in counts.items()) + ")"
        if job.get("last_error"):
            text += f": {job['last_error']}"
        parts.append(text)
    next_run = job.get("next_run")
    parts.append(f"next in {duration(max(0.0, next_run - now))}" if next_run is not None else "not scheduled")
    return "; ".join(parts)


def duration(seconds: Any) -> str:
    """A length of time as people read it: `0.2 s`, `33 s`, `4 min 58 s`, `3 h 5 min`, `2 d 1 h`."""
    if not isinstance(seconds, int | float):
        return "?"
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 or seconds == int(seconds) else f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"
