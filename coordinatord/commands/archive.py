"""``coordinatord archive [--project DIR_OR_ID] [--all] [--json]``: run the session archiver now.

Asks the running daemon (control commands ``archive_plan`` and ``archive``) to write the due
sessions — idle past ``jobs.archive_idle_s`` or with a TTL ending before the next run plus
``jobs.archive_margin_s``; with ``--all`` every live session — to
``<project>/.kilocode/sessions/<id>.json`` (live sessions stay in Redis). Without
``--project`` every known project whose folder is on this host is archived, one at a time, with
a line per project as it finishes. Exit code 0 when all went well, 1 when the daemon does not
answer or a session could not be archived.

Standard library plus :mod:`coordinatord.control` and :mod:`coordinatord.paths` only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from coordinatord import control, paths
from coordinatord.errors import DaemonError
from coordinatord.words import plural

PLAN_TIMEOUT_S = 15.0
ARCHIVE_TIMEOUT_S = 3_600.0
"""One project's archiving may write thousands of files, each fsynced."""


def main(args: argparse.Namespace) -> int:
    socket_path = paths.shim_socket_path(args.socket)
    try:
        if args.project is None:
            plan = control.request(socket_path, "archive_plan", timeout=PLAN_TIMEOUT_S)
            targets = [p["project_id"] for p in plan["projects"]]
            if not targets:
                return _report_nothing(args)
            if not args.json:
                print(f"archiving sessions of {plural(len(targets), 'project')} on this host")
        else:
            targets = [project_arg(args.project)]
        results: list[dict[str, Any]] = []
        for target in targets:
            request = {"project": target, "all": bool(args.all)}
            reply = control.request(socket_path, "archive", request, timeout=ARCHIVE_TIMEOUT_S)
            for project in reply["projects"]:
                results.append(project)
                if not args.json:
                    print(f"  {project['project_id']}  {project['root']}  {_counts(project)}", flush=True)
    except DaemonError as exc:
        return fail(str(exc))
    names = ("archived", "unchanged", "failed", "other_host")
    totals = {name: sum(p.get(name, 0) for p in results) for name in names}
    totals["projects"] = len(results)
    if args.json:
        print(json.dumps({"projects": results, "totals": totals}, indent=2))
    else:
        print(f"done: {_counts(totals)} in {plural(len(results), 'project')}")
        if totals["other_host"]:
            print(
                f"{plural(totals['other_host'], 'session')} last written on another host: archived "
                "there (a session is archived on the host that last wrote it)"
            )
        not_due = sum(p.get("not_due", 0) for p in results)
        if not_due:
            print(
                f"{plural(not_due, 'live session')} not due yet (active within jobs.archive_idle_s "
                "and not about to expire); `coordinatord archive --all` archives them now"
            )
    if totals["failed"]:
        return fail(
            f"{plural(totals['failed'], 'session')} could not be archived; the daemon's log says why "
            "(event session_archive_failed)"
        )
    return 0


def project_arg(value: str) -> str:
    """A project as the daemon knows it: an existing folder becomes its absolute path (as the
    shim sends it); anything else is taken as a project id."""
    path = Path(value).expanduser()
    return paths.canonical_root(path) if path.exists() else value


def fail(message: str) -> int:
    print(f"coordinatord: {message}", file=sys.stderr)
    return 1


def _report_nothing(args: argparse.Namespace) -> int:
    if args.json:
        totals = {"archived": 0, "unchanged": 0, "failed": 0, "other_host": 0, "projects": 0}
        print(json.dumps({"projects": [], "totals": totals}, indent=2))
    else:
        print(
            "no known project has its folder on this host: nothing to archive (projects become known "
            "when a shim connects from them, or from [[projects]] in config.toml)"
        )
    return 0


def _counts(counts: dict[str, Any]) -> str:
    return ", ".join(f"{counts.get(name, 0)} {name}" for name in ("archived", "unchanged", "failed"))
