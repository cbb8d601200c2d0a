"""``coordinatord doctor [--json] [--config FILE] [--no-color]``: is everything set up right.

One line per check (✓ fine, ! worth a look, ✗ broken), each problem followed by what fixes it;
the checks are in :mod:`coordinatord.doctor`. Exit code 0 when nothing is broken (warnings
allowed), 1 when a check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from coordinatord import doctor
from coordinatord.commands.status import wants_colour

MARKS = {"ok": ("✓", "32"), "warn": ("!", "33"), "fail": ("✗", "31")}


def main(args: argparse.Namespace) -> int:
    ctx = doctor.context(os.environ, args.config, Path.cwd())
    checks = doctor.run_all(ctx)
    failed = any(check.status == "fail" for check in checks)
    if args.json:
        print(json.dumps({"ok": not failed, "checks": [c.to_json() for c in checks]}, indent=2))
    else:
        print(render(checks, colour=wants_colour(args, sys.stdout)))
    return 1 if failed else 0


def render(checks: list[doctor.Check], colour: bool = False) -> str:
    width = max((len(check.name) for check in checks), default=0)
    lines = []
    for check in checks:
        mark, code = MARKS[check.status]
        if colour:
            mark = f"\033[{code}m{mark}\033[0m"
        lines.append(f"{mark} {check.name.ljust(width)}  {check.summary}")
        if check.fix and check.status != "ok":
            lines.append(f"  {' ' * width}  fix: {check.fix}")
    counts = {status: sum(c.status == status for c in checks) for status in MARKS}
    lines.append(f"{counts['ok']} fine, {counts['warn']} to look at, {counts['fail']} broken")
    return "\n".join(lines)
