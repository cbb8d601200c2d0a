"""The git pre-commit hook's check (``coordinatord git-guard install`` writes the hook that runs
``python -m coordinatord.guard``): refuse a commit whose staged paths another agent reserved
exclusively (``files_reserve``).

Standard library only, like the shim: it runs on every commit, so it imports neither pydantic,
nor mcp, nor redis. It asks the daemon over the control channel (``files_guard``), which finds
the repository's project as a shim's connection would and matches the paths.

Who "this" agent is: ``--agent``, else ``COORDINATORD_AGENT``; that agent's own reservations
never block it. With neither, the committer is taken for a person, and every exclusive
reservation of any agent blocks.

It never stands in the way of work for its own sake: with the daemon down, or the repository
outside any project, it warns on stderr and lets the commit through. ``COORDINATORD_GUARD=off``
(or ``git commit --no-verify``) skips it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from coordinatord.control.client import request
from coordinatord.errors import ConfigError, DaemonError

# No typing at run time: see TYPE_CHECKING in coordinatord/cli.py.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

GUARD_ENV = "COORDINATORD_GUARD"
AGENT_ENV = "COORDINATORD_AGENT"
EXIT_REFUSED = 3
"""The hook turns this (and only this) into a refused commit: any other failure of the check,
an interpreter that cannot import coordinatord included, lets the commit through."""
TIMEOUT_S = 5.0
BYPASS = f"bypass: {GUARD_ENV}=off git commit ..., or git commit --no-verify"


def _warn(text: str) -> None:
    sys.stderr.write(f"coordinatord git-guard: {text}\n")


def _git(*args: str) -> bytes:
    # git from PATH, as git itself found it to run this hook.
    return subprocess.run(["git", *args], check=True, capture_output=True, timeout=30).stdout  # noqa: S607


def _left(seconds: float) -> str:
    whole = int(seconds)
    if whole >= 3600:
        return f"{whole // 3600}h {whole % 3600 // 60}m"
    return f"{whole // 60}m {whole % 60}s" if whole >= 60 else f"{whole}s"


def refusal(blocking: list[dict[str, Any]], agent: str | None) -> str:
    """The message of a refused commit: each reserved path with its holder, reason, time left."""
    lines = ["commit refused: staged files are reserved exclusively by other agents"]
    for hold in blocking:
        reason = f", reason {hold['reason']!r}" if hold.get("reason") else ""
        globs = ", ".join(hold["paths"])
        for path in hold["overlaps"]:
            lines.append(
                f"  {path}: reserved by {hold['agent']}{reason}, {_left(hold['expires_in'])} left ({globs})"
            )
    lines.append(BYPASS)
    if agent is None:
        lines.append(f"if you are the agent holding them, set {AGENT_ENV}=<its name> for the commit")
    return "\n".join(lines)


def check(socket: str | None, config: str | None, agent: str | None) -> int:
    """0: the commit may go ahead; :data:`EXIT_REFUSED`: it may not (the reason is on stderr)."""
    if os.environ.get(GUARD_ENV, "").strip().lower() in ("off", "0", "false", "no"):
        return 0
    agent = agent or os.environ.get(AGENT_ENV) or None
    try:
        # git runs a hook from the top of the work tree (and sets GIT_INDEX_FILE for
        # pre-commit): one subprocess fewer on every commit.
        root = (
            os.getcwd()
            if "GIT_INDEX_FILE" in os.environ
            else _git("rev-parse", "--show-toplevel").decode().strip()
        )
        staged = [
            p.decode("utf-8", "surrogateescape")
            for p in _git("diff", "--cached", "--name-only", "--no-renames", "-z").split(b"\0")
            if p
        ]
    except (OSError, subprocess.SubprocessError) as exc:
        _warn(f"cannot read the staged files ({exc}); commit not checked")
        return 0
    if not staged:
        return 0
    from coordinatord.shim.config import load

    try:
        socket_path = load(socket, config, no_autostart=True).socket
    except ConfigError as exc:
        _warn(f"{exc}; commit not checked")
        return 0
    try:
        reply = request(
            Path(socket_path),
            "files_guard",
            {"root": root, "paths": staged, "agent": agent},
            timeout=TIMEOUT_S,
        )
    except DaemonError as exc:
        first = str(exc).splitlines()[0]
        _warn(f"{first}; commit allowed, file reservations not checked")
        return 0
    if reply.get("problem"):
        _warn(f"{reply['problem']}; commit not checked")
        return 0
    blocking = reply.get("blocking") or []
    if not blocking:
        return 0
    _warn(refusal(blocking, agent))
    return EXIT_REFUSED


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m coordinatord.guard", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--socket", metavar="PATH", help="daemon socket (default: as the shim finds it)")
    parser.add_argument("--config", metavar="FILE", help="config file (default: as the shim finds it)")
    parser.add_argument("--agent", metavar="NAME", help=f"this agent (default: ${AGENT_ENV}; none: a person)")
    args = parser.parse_args(argv)
    return check(args.socket, args.config, args.agent)


if __name__ == "__main__":
    sys.exit(main())
