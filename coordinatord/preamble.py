"""The identity preamble: the one line a shim sends before relaying MCP bytes.

Standard library only (the shim imports it). A connection whose first line is not a preamble
is served as an anonymous client in the default project, so a plain MCP client can talk to the
socket directly. A preamble whose ``project`` is ``null`` names no project on purpose (the shim
started outside any repository): project tools refuse on that connection, naming ``cwd``, the
directory the shim started in.
"""

from __future__ import annotations

import json

# No typing at run time: see TYPE_CHECKING in coordinatord/cli.py.
TYPE_CHECKING = False
if TYPE_CHECKING:
    pass

MARKER = "coordinatord-preamble"
VERSION = 1


class Preamble:
    """Who is on the other end of a connection. (Not a dataclass: importing dataclasses
    costs the shim ~13 ms.)"""

    __slots__ = ("agent", "cwd", "pid", "project", "tools", "version")

    def __init__(
        self,
        agent: str | None,
        project: str | None,
        pid: int | None,
        tools: list[str] | None = None,
        version: int = VERSION,
        cwd: str | None = None,
    ) -> None:
        self.agent = agent
        self.project = project
        self.pid = pid
        self.tools = tools
        self.version = version
        self.cwd = cwd

    def __repr__(self) -> str:
        fields = (
            f"agent={self.agent!r}, project={self.project!r}, pid={self.pid!r}, tools={self.tools!r}, "
            f"cwd={self.cwd!r}"
        )
        return f"Preamble({fields})"

    def encode(self) -> bytes:
        body = {
            "type": MARKER,
            "v": self.version,
            "agent": self.agent,
            "project": self.project,
            "pid": self.pid,
            "tools": self.tools,
        }
        if self.cwd is not None:
            body["cwd"] = self.cwd
        return json.dumps(body, separators=(",", ":")).encode() + b"\n"


def parse(data: object) -> Preamble | None:
    """The preamble a connection's first line (``data``, already parsed from JSON) is, or
    ``None`` when it is something else (MCP traffic).

    Raises ``ValueError`` for a line that claims to be a preamble but is malformed.
    """
    if not isinstance(data, dict) or data.get("type") != MARKER:
        return None
    agent, project, pid, version = data.get("agent"), data.get("project"), data.get("pid"), data.get("v")
    tools, cwd = data.get("tools"), data.get("cwd")
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"preamble version must be a positive integer, got {version!r:.40}")
    if agent is not None and (
        not isinstance(agent, str) or not agent.strip() or len(agent) > 128 or not agent.isprintable()
    ):
        raise ValueError("preamble agent must be a non-empty printable string of at most 128 characters")
    if project is not None and (
        not isinstance(project, str) or not project.startswith("/") or "\0" in project
    ):
        raise ValueError("preamble project must be an absolute path")
    if pid is not None and (not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0):
        raise ValueError("preamble pid must be a positive integer")
    if tools is not None and (
        not isinstance(tools, list) or not all(isinstance(t, str) and t for t in tools)
    ):
        raise ValueError("preamble tools must be a list of tool group names")
    if cwd is not None and (not isinstance(cwd, str) or not cwd.startswith("/") or "\0" in cwd):
        raise ValueError("preamble cwd must be an absolute path")
    return Preamble(
        agent=agent.strip() if agent else None,
        project=project,
        pid=pid,
        tools=tools,
        version=version,
        cwd=cwd,
    )
