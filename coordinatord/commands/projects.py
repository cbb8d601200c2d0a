"""``coordinatord projects list|forget ID_OR_ROOT [--purge] [--force] [--json]``,
``coordinatord projects migrate OLD NEW [--force] [--keep] [--json]``.

``list`` shows every project the daemon's jobs walk: its id, root, host, when a shim last
announced it, where it comes from (``shim`` or ``config``), whether its folder is on this host,
and the agents connected in it now. ``forget`` removes one from the registry (``coord:projects``)
so the jobs stop walking it; ``--purge`` also deletes every key of its namespace. The daemon
refuses to forget a ``[[projects]]`` entry of its config (it would be known again at once) and,
without ``--force``, a project with a connection open. ``migrate`` copies every key of namespace
OLD into NEW with its TTL, then deletes OLD's keys and forgets it unless ``--keep`` (the daemon
does it: :mod:`coordinatord.control.projects` says what it refuses and what happens to live
locks). ``list`` also says where each id comes from and names an old path-hash id whose root
has another id now, with the ``migrate`` command that moves its keys. Exit code 0 on success, 1
when the daemon does not answer or refuses, 2 for a usage error.

Standard library plus :mod:`coordinatord.control` and :mod:`coordinatord.paths` only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from coordinatord import control, paths
from coordinatord.commands.archive import fail, project_arg
from coordinatord.commands.status import id_notes
from coordinatord.errors import DaemonError
from coordinatord.words import duration

LIST_TIMEOUT_S = 15.0
FORGET_TIMEOUT_S = 600.0
"""A purge walks the whole namespace: a large project holds hundreds of thousands of keys."""
MIGRATE_TIMEOUT_S = 3_600.0
"""A migration reads and writes every key of the namespace, then purges it."""


def main(args: argparse.Namespace) -> int:
    usage = _usage_error(args)
    if usage is not None:
        print(f"coordinatord projects {args.action}: {usage}", file=sys.stderr)
        return 2
    socket_path = paths.shim_socket_path(args.socket)
    try:
        if args.action == "list":
            result = control.request(socket_path, "projects_list", timeout=LIST_TIMEOUT_S)
        elif args.action == "migrate":
            request = {
                "old": args.project,
                "new": project_arg(args.new),
                "force": args.force,
                "keep": args.keep,
            }
            result = control.request(socket_path, "projects_migrate", request, timeout=MIGRATE_TIMEOUT_S)
        else:
            request = {"project": project_arg(args.project), "purge": args.purge, "force": args.force}
            result = control.request(socket_path, "projects_forget", request, timeout=FORGET_TIMEOUT_S)
    except DaemonError as exc:
        message = str(exc)
        if "pass force" in message and args.action == "migrate":
            message += f"\n(to go ahead: coordinatord projects migrate {args.project} {args.new} --force)"
        elif "pass force" in message:
            message += f"\n(to forget it anyway: coordinatord projects forget {args.project} --force)"
        return fail(message)
    if args.json:
        print(json.dumps(result, indent=2))
    elif args.action == "list":
        print(render_list(result, now=result.get("now") or time.time()))
    elif args.action == "migrate":
        print(render_migrate(result))
    else:
        print(render_forget(result))
    return 0


def _usage_error(args: argparse.Namespace) -> str | None:
    if args.action == "migrate":
        if not args.project or not args.new:
            return (
                "give the old id and the new id (or the root, for its id now), e.g.\n"
                "  coordinatord projects migrate app-1a2b3c4d5e github.com/org/app"
            )
        if args.purge:
            return "takes no --purge (it deletes OLD's keys unless --keep)"
        return None
    if args.new is not None:
        return f"takes one project; {args.new!r} is one too many (two are for migrate OLD NEW)"
    if args.keep:
        return "takes no --keep (that is for migrate)"
    if args.action == "forget" and not args.project:
        return "give the project's id or root, e.g.\n  coordinatord projects forget my-app-845bd79b59"
    if args.action == "list" and (args.project or args.purge or args.force):
        return "takes no project, --purge or --force (those are for forget)"
    return None


def render_list(result: dict[str, Any], now: float) -> str:
    projects = result.get("projects", [])
    lines = [f"known projects: {len(projects)} (this host: {result.get('host', '?')})"]
    if not projects:
        lines.append(
            "  (none: a project becomes known when a shim connects from it, or from [[projects]] in "
            "config.toml)"
        )
        return "\n".join(lines)
    rows = [("PROJECT", "ID FROM", "ROOT", "HOST", "LAST SEEN", "SOURCE", "ON THIS HOST", "CONNECTED")]
    notes: list[str] = []
    for project in projects:
        seen = project.get("last_seen")
        source = project.get("id_source")
        notes += [
            f"{project.get('project_id')}: {note}"
            for note in id_notes(project, str(project.get("project_id")))
        ]
        rows.append(
            (
                str(project.get("project_id")),
                {"path": "its path", None: "?"}.get(source, str(source)),
                str(project.get("root")),
                str(project.get("host")),
                "never" if seen is None else f"{duration(max(0.0, now - seen))} ago",
                str(project.get("source")),
                "yes" if project.get("local") else "no",
                ", ".join(project.get("connected") or []) or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines += ["  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines += ["", *notes] if notes else []
    return "\n".join(lines)


def render_migrate(result: dict[str, Any]) -> str:
    counts = ", ".join(f"{result.get(name, 0)} {name}" for name in ("copied", "merged", "kept", "vanished"))
    lines = [f"moved the keys of {result['old']} to {result['new']}: {counts}"]
    if result.get("kept"):
        lines.append(f"  kept: keys {result['new']} held already (its own values win)")
    if result.get("unsupported"):
        shown = ", ".join(result.get("unsupported_keys") or [])
        lines.append(
            f"  left out {result['unsupported']} key(s) of a type coordinatord never writes: {shown}"
        )
    if result.get("purged"):
        count = result.get("keys_deleted") or 0
        forgot = " and forgot it" if result.get("forgotten") else ""
        lines.append(f"deleted the {count} key{'' if count == 1 else 's'} of {result['old']}{forgot}")
    else:
        lines.append(
            f"kept {result['old']} as it was (--keep); delete it later with: coordinatord projects "
            f"forget {result['old']} --purge"
        )
    return "\n".join(lines)


def render_forget(result: dict[str, Any]) -> str:
    named = f"project {result['project_id']} ({result['root']})"
    if result.get("purged"):
        count = result.get("keys_deleted") or 0
        text = f"forgot {named} and deleted its {count} key{'' if count == 1 else 's'}"
    else:
        text = f"forgot {named}; its keys expire with their TTLs (--purge deletes them now)"
    connected = result.get("connected") or []
    if connected:
        text += (
            f"\nstill connected: {', '.join(connected)}; their next connection makes the project known again"
        )
    return text
