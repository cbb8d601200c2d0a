"""What one connection and one tool call know: :class:`Peer`, :class:`CallContext`.

The tools import this module, and it imports neither the server, nor the MCP SDK, nor the
tools, nor :mod:`coordinatord.app`: a tool sees of the daemon only what :class:`Shared` names
(the services and the activity log), so the daemon's wiring can change without touching a tool.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from coordinatord.errors import NoProjectError
from coordinatord.keyspace import Namespace
from coordinatord.scope import ProjectScope
from coordinatord.services.activity import ActivityLog
from coordinatord.services.agents import AgentService
from coordinatord.services.files import FileService
from coordinatord.services.kv import KvService
from coordinatord.services.locks import LockService
from coordinatord.services.memory_bank import MemoryBankService
from coordinatord.services.messages import MessageService
from coordinatord.services.ratelimits import RateLimitService
from coordinatord.services.sessions import SessionService
from coordinatord.services.tasks import TaskService

ANONYMOUS_AGENT = "anonymous"
MAX_AGENT_NAME = 128


def agent_name(*candidates: str | None) -> str:
    """The first usable name: the shim's ``--agent`` (checked by the preamble), else the MCP
    client's ``clientInfo.name`` (anything a client sends: made printable and bounded, since it
    ends up in key names and lock holders), else ``anonymous``."""
    for candidate in candidates:
        if candidate:
            cleaned = "".join(ch if ch.isprintable() else "?" for ch in candidate.strip())[:MAX_AGENT_NAME]
            if cleaned:
                return cleaned
    return ANONYMOUS_AGENT


@dataclass
class HeldFiles:
    """A file reservation as its connection remembers it."""

    paths: tuple[str, ...]
    deadline: float
    """``time.monotonic()`` when the lease ends, as last heard (a little after the server's end)."""


@dataclass
class Peer:
    """One socket connection: who is on the other end and which project it works in.

    Two pids: ``peer_pid`` (and ``peer_uid``) come from the kernel (SO_PEERCRED) and can be
    trusted; ``claimed_pid`` is what the preamble says, which any process can set. ``pid`` is
    the trusted one whenever the kernel gave it.
    """

    conn_id: int
    agent: str | None
    scope: ProjectScope
    claimed_pid: int | None
    peer_pid: int | None
    peer_uid: int | None
    groups: frozenset[str]
    present_as: str | None = None  # the agent name this connection counts as present for
    file_reservations: dict[str, HeldFiles] = field(default_factory=dict)
    """The file reservations this connection took and still believes live, by id: what lets a
    holder be told, in its next reply, that one lapsed (tools/files.py), with no backend call
    for connections that hold none. Dies with the connection."""

    @property
    def namespace(self) -> Namespace:
        """The project's namespace; an unscoped connection has none, and asking for it is the
        same refusal its tool calls get (so no code path can write for it by accident)."""
        namespace = self.scope.namespace
        if namespace is None:
            raise NoProjectError(self.scope.missing or "this connection has no project")
        return namespace

    @property
    def project_id(self) -> str | None:
        return self.scope.project_id

    @property
    def project_root(self) -> str | None:
        return self.scope.root

    @property
    def pid(self) -> int | None:
        return self.peer_pid if self.peer_pid is not None else self.claimed_pid

    @property
    def pid_mismatch(self) -> bool:
        """The preamble claims a pid the kernel does not confirm."""
        claimed, real = self.claimed_pid, self.peer_pid
        return claimed is not None and real is not None and claimed != real

    def describe(self) -> dict[str, Any]:
        """The connection as ``coordinatord status`` shows it."""
        return {
            "conn": self.conn_id,
            "agent": self.present_as or self.agent,
            "project": self.project_id,
            "id_source": self.scope.id_source,
            "root": self.project_root,
            "no_project": self.scope.missing,
            "cwd": self.scope.cwd,
            "pid": self.pid,
            "peer_pid": self.peer_pid,
            "peer_uid": self.peer_uid,
            "claimed_pid": self.claimed_pid,
        }


@dataclass
class Services:
    """The services one daemon shares across connections, jobs and control commands."""

    kv: KvService
    sessions: SessionService
    tasks: TaskService
    agents: AgentService
    locks: LockService
    files: FileService
    ratelimits: RateLimitService
    memory_bank: MemoryBankService
    messages: MessageService


class Shared(Protocol):
    """The part of the daemon's shared state (:class:`coordinatord.app.App`) a tool call may
    reach. A protocol, so that this module needs no import of the app (which would close a
    cycle: the app holds the registry of the tools, which import this)."""

    @property
    def services(self) -> Services: ...

    @property
    def activity(self) -> ActivityLog: ...


@dataclass
class CallContext:
    """One tool call: the services, the caller, and what to log about it."""

    app: Shared
    peer: Peer
    agent: str
    log_key: str | None = None

    @property
    def services(self) -> Services:
        return self.app.services

    @property
    def namespace(self) -> Namespace:
        return self.peer.namespace
