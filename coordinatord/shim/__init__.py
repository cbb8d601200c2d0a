"""The stdio shim: what an editor runs as its MCP server, a relay to the daemon's socket.

Standard library only, and nothing heavy: an editor starts one shim per session, and each
millisecond of start-up is paid every time. The daemon does all MCP work. The shim sends the
identity preamble (agent, project, pid, tool groups or profiles), then relays lines both ways, reading just
enough of them to outlive the daemon (:mod:`coordinatord.shim.relay`): a daemon restart costs
the editor only the calls that were running, and with no daemon the shim starts one
(:mod:`coordinatord.shim.autostart`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from coordinatord import paths
from coordinatord.preamble import Preamble
from coordinatord.shim.config import ShimConfig, ShimConfigError, load
from coordinatord.tool_groups import unknown_tool_names, unknown_tools_message

__all__ = ["ShimConfig", "main"]


def main(
    socket: str | None,
    agent: str | None,
    project: str | None,
    tools: list[str] | None = None,
    config_file: str | None = None,
    no_autostart: bool = False,
) -> int:
    """Relay until the editor closes stdin. Returns the process exit code."""
    from coordinatord.shim.relay import Relay, refuse

    unknown = unknown_tool_names(tools or [])
    if unknown:
        return refuse(unknown_tools_message(unknown))
    try:
        config = load(socket, config_file, no_autostart)
    except ShimConfigError as exc:
        return refuse(str(exc))
    try:
        cwd: Path | None = Path.cwd()
    except OSError:  # the folder the editor started us in was removed
        cwd = None
    found = Path(project).expanduser() if project else (paths.find_project_root(cwd) if cwd else None)
    root = paths.canonical_root(found) if found is not None else None
    if root is None:
        where = (
            paths.not_a_project(cwd) if cwd is not None else "the shim's working directory no longer exists"
        )
        sys.stderr.write(f"coordinatord shim: {where}; {paths.SHIM_PROJECT_FIX}\n")
    preamble = Preamble(
        agent=agent, project=root, pid=os.getpid(), tools=tools, cwd=str(cwd) if cwd is not None else None
    )
    starter = None
    if config.autostart:
        from coordinatord.shim.autostart import Starter

        starter = Starter(config)
    try:
        return Relay(config, preamble.encode(), starter).run()
    except KeyboardInterrupt:
        return 130
    finally:
        if starter is not None:
            starter.close()
