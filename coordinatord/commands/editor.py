"""``coordinatord editor add|list|remove``: put the shim into an editor's MCP config, list the
configs that name it (and whether they reach the daemon), take it out again.

See docs/editors.md for every editor's file and format. Standard library only (plus
``tomlkit`` for Codex): no pydantic, no mcp.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from coordinatord import editors, paths, tool_groups
from coordinatord.editors import EditorConfigError, Target


def main(args: argparse.Namespace) -> int:
    home = Path(os.path.expanduser("~"))
    try:
        if args.editor_action == "list":
            return _list(args, home)
        target = editors.BY_NAME[args.editor]
        scope, project = _scope(args, target)
        path = editors.config_path(target, scope, home, project)
        if args.editor_action == "add":
            return _add(args, target, scope, project, path)
        return _remove(args, target, scope, path)
    except EditorConfigError as exc:
        print(f"coordinatord: {exc}", file=sys.stderr)
        return 2


def _scope(args: argparse.Namespace, target: Target) -> tuple[str, Path | None]:
    """``--global``, ``--project [DIR]``, else the project of the cwd when the editor has a
    project config and the cwd is in a project, else global."""
    if args.project is not None:
        start = Path(args.project) if args.project else Path.cwd()
        if args.project:
            root: Path | None = Path(paths.canonical_root(start))
        else:
            root = paths.find_project_root(start)
            if root is None:
                raise EditorConfigError(f"{paths.not_a_project(start)}; pass --project DIR or --global")
        return "project", root
    if args.global_:
        return "global", None
    root = paths.find_project_root(Path.cwd())
    if "project" in target.scopes() and root is not None:
        return "project", root
    if "global" in target.scopes():
        return "global", None
    raise EditorConfigError(
        f"{paths.not_a_project(Path.cwd())}; {target.title} has only project configs: pass --project DIR"
    )


def _add(args: argparse.Namespace, target: Target, scope: str, project: Path | None, path: Path) -> int:
    tools = [group.strip() for group in args.tools.split(",") if group.strip()] if args.tools else None
    unknown = tool_groups.unknown_tool_names(tools or [])
    if unknown:
        print(f"coordinatord: {tool_groups.unknown_tools_message(unknown)}", file=sys.stderr)
        return 2
    argv = editors.shim_argv(
        editors.coordinatord_command(),
        args.agent or target.agent,
        tools=tools,
        config=args.config,
        socket=args.socket,
        project=project if scope == "project" else None,
    )
    allow = tool_groups.always_allow(tools, args.allow_writes) if target.allow_key else None
    entry = editors.entry_for(target, argv, allow)
    change = editors.plan_add(target, path, entry, name=args.name, force=args.force)
    where = f"{target.title}, {scope}"
    if args.dry_run:
        _print_diff(change)
        return 0
    if not change.changed:
        print(f"{path}: server {args.name!r} is already set up ({where}); nothing changed")
    else:
        backup = editors.apply(change)
        print(f"{change.note} MCP server {args.name!r} in {path} ({where})")
        if backup is not None:
            print(f"  backup:  {backup}")
    print(f"  command: {' '.join(argv)}")
    if allow is not None:
        print(f"  {target.allow_key}: {', '.join(allow) if allow else '(none)'}")
    steps = target.next_project if scope == "project" else target.next_global
    if args.name != editors.DEFAULT_NAME:
        steps = steps.replace("mcp__redis", f"mcp__{args.name}")
    print(f"next: {steps}")
    return 0


def _remove(args: argparse.Namespace, target: Target, scope: str, path: Path) -> int:
    change = editors.plan_remove(target, path, name=args.name)
    if args.dry_run:
        _print_diff(change)
        return 0
    if not change.changed:
        print(f"{path}: {change.note}; nothing changed")
        if args.project is None and not args.global_ and len(target.scopes()) > 1:
            other = "--global" if scope == "project" else "--project DIR"
            print(f"(the {scope} config was looked at; for the other one pass {other})")
        return 0
    backup = editors.apply(change)
    print(f"{path}: {change.note} ({target.title}, {scope})")
    if backup is not None:
        print(f"  backup: {backup}")
    print("next: reload or restart the editor so that it drops the server")
    return 0


def _print_diff(change: editors.Change) -> None:
    import difflib

    if not change.changed:
        print(f"{change.path}: {change.note or 'no change'}; nothing would change")
        return
    before = (change.before or "").splitlines(keepends=True)
    after = (change.after or "").splitlines(keepends=True)
    lines = difflib.unified_diff(
        before,
        after,
        fromfile=str(change.path) if change.before is not None else "/dev/null",
        tofile=str(change.path) if change.after is not None else "/dev/null",
    )
    for line in lines:
        sys.stdout.write(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    print(f"(dry run: {change.note}; nothing written)")


def _list(args: argparse.Namespace, home: Path) -> int:
    if args.project:
        project: Path | None = Path(paths.canonical_root(args.project))
    else:
        project = paths.find_project_root(Path.cwd())
    found = editors.discover(home, project)
    rows = []
    for config in found:
        ok, said = editors.reaches(config.socket) if config.parses else (False, "")
        rows.append({**config.to_json(), "reaches_daemon": ok, "daemon": said})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        where = f" or in {project}" if project else ""
        print(
            f"no editor config under {home}{where} names coordinatord; add one with: "
            "coordinatord editor add EDITOR"
        )
        return 0
    for row in rows:
        print(f"{row['editor']} ({row['scope']}): {row['path']}")
        if not row["parses"]:
            print(f"  does not parse: {row['problem']}")
            continue
        print(f"  server   {row['server']}")
        command_state = "ok" if row["command_ok"] else f"PROBLEM: {row['problem']}"
        print(f"  command  {' '.join(row['command'])}  ({command_state})")
        state = (
            f"reaches the daemon ({row['daemon']})"
            if row["reaches_daemon"]
            else f"no daemon: {row['daemon']}"
        )
        print(f"  socket   {row['socket']}  {state}")
    return 0
