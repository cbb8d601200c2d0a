"""``coordinatord sessions list|restore ID [--project DIR_OR_ID] [--force] [--json]``.

``list`` shows a project's live sessions (in Redis, as ``session_list`` gives them) and its
archived ones (``<project>/.kilocode/sessions/*.json``); ``restore ID`` loads an archive back
into Redis, refusing to replace a live session unless ``--force``. The project defaults to the
one a shim started here would use (the git root of the current directory). Exit code 0 on
success, 1 when the daemon does not answer or refuses (unknown session, live session …), 2 for
a usage error.

Standard library plus :mod:`coordinatord.control` and :mod:`coordinatord.paths` only.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from coordinatord import control, paths
from coordinatord.commands.archive import fail, project_arg
from coordinatord.errors import DaemonError
from coordinatord.words import plural

TIMEOUT_S = 120.0


def main(args: argparse.Namespace) -> int:
    socket_path = paths.shim_socket_path(args.socket)
    if args.project:
        project = project_arg(args.project)
    elif (found := paths.find_project_root(Path.cwd())) is not None:
        project = str(found)
    else:
        return fail(f"{paths.not_a_project(Path.cwd())}; run this in the project, or give --project")
    if args.action == "restore" and not args.session_id:
        print(
            "coordinatord sessions restore: give the id of the session to restore, e.g.\n"
            "  coordinatord sessions restore session-2026-02-13-001",
            file=sys.stderr,
        )
        return 2
    if args.action == "list" and args.session_id:
        print("coordinatord sessions list: takes no session id", file=sys.stderr)
        return 2
    try:
        if args.action == "list":
            result = control.request(socket_path, "sessions_list", {"project": project}, timeout=TIMEOUT_S)
        else:
            result = control.request(
                socket_path,
                "sessions_restore",
                {"project": project, "session_id": args.session_id, "force": bool(args.force)},
                timeout=TIMEOUT_S,
            )
    except DaemonError as exc:
        message = str(exc)
        if args.action == "restore" and "force=true" in message:
            message += f"\n(to replace it: coordinatord sessions restore {args.session_id} --force)"
        return fail(message)
    if args.json:
        print(json.dumps(result, indent=2))
    elif args.action == "list":
        print(render_list(result))
    else:
        print(
            f"restored session {result['session_id']}: version {result['version']}, "
            f"{plural(result['history_length'], 'turn')}, expires in {_duration(result['expires_in'])} "
            f"(from {result['restored_from']})"
        )
    return 0


def render_list(result: dict[str, Any]) -> str:
    lines = [f"project {result['project_id']}  ({result['root']})", ""]
    live = result.get("live", [])
    lines.append(f"live sessions ({len(live)}{'+' if result.get('live_truncated') else ''})")
    if live:
        rows = [("SESSION", "VERSION", "TURNS", "LAST ACTIVITY", "EXPIRES IN")]
        rows += [
            (
                s["session_id"],
                "-" if s.get("version") is None else str(s["version"]),
                str(s["history_length"]),
                s["last_activity"],
                _duration(s["expires_in"]),
            )
            for s in live
        ]
        lines += _table(rows)
    else:
        lines.append("  (none)")
    lines.append("")
    archived = result.get("archived", [])
    if result.get("archive_dir") is None:
        lines.append("archived sessions: the project's folder is not on this host")
        return "\n".join(lines)
    more = "+" if result.get("archived_truncated") else ""
    lines.append(f"archived sessions ({len(archived)}{more}) in {result['archive_dir']}")
    if not archived:
        lines.append("  (none)")
        return "\n".join(lines)
    live_ids = {s["session_id"] for s in live}
    rows = [("SESSION", "VERSION", "TURNS", "ARCHIVED AT", "LIVE")]
    for a in archived:
        if "error" in a:
            rows.append((a["session_id"], "?", "?", f"unreadable: {a['error']}", ""))
            continue
        rows.append(
            (
                a["session_id"],
                str(a["version"]),
                str(a["history_length"]),
                a.get("archived_at") or "?",
                "yes" if a["session_id"] in live_ids else "no",
            )
        )
    lines += _table(rows)
    return "\n".join(lines)


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int) or seconds < 0:
        return "never" if seconds == -1 else "?"
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
