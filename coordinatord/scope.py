"""Which project a root names, and which project a connection works in: the two rules that
decide every project id.

- :func:`project_ref` is the one way a root becomes a project id. Whatever spelling reaches the
  daemon (a preamble, a ``[[projects]]`` entry, ``--project`` of an operator command, a control
  command's ``project``), it is canonicalised with :func:`coordinatord.paths.canonical_root`
  before it is hashed, so ``/x/A/../B``, ``/x/B/``, ``//x/B``, ``/x/./B`` and a symlink to
  ``/x/B`` are one project with one namespace and one archive folder.
- :class:`ProjectScope` is what a connection's preamble made of it: a project (its namespace and
  root), the ``default`` project (no preamble at all: a raw MCP client), or *no project* (a shim
  that found none, ``project: null``). An unscoped connection may call only the tools that need
  no project (``redis_ping``); every other call is refused with :attr:`ProjectScope.missing`,
  which says what is wrong and how to fix it.

Pure apart from the path resolution (a few ``lstat`` calls): tested without servers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from coordinatord import paths
from coordinatord.keyspace import DEFAULT_PROJECT_ID, Namespace, project_id_for
from coordinatord.preamble import Preamble


@dataclass(frozen=True, slots=True)
class ProjectRef:
    """A project named by its root: the canonical root and the id hashed from it."""

    root: str
    project_id: str

    @property
    def namespace(self) -> Namespace:
        return Namespace(self.project_id)


def project_ref(root: str) -> ProjectRef:
    """The project an absolute root names, whatever its spelling. Blocking (resolves symlinks)."""
    canonical = paths.canonical_root(root)
    return ProjectRef(canonical, project_id_for(canonical))


def no_project_message(cwd: str | None) -> str:
    """Why a shim's connection has no project, and the fix, for every refusal on it."""
    why = "it named none and sent no working directory" if cwd is None else paths.not_a_project(Path(cwd))
    return f"this editor's shim has no project: {why}; {paths.SHIM_PROJECT_FIX}"


@dataclass(frozen=True, slots=True)
class ProjectScope:
    """Where one connection's calls work. Exactly one of ``namespace`` and ``missing`` is set."""

    namespace: Namespace | None
    root: str | None = None
    """The canonical project root; ``None`` in the default project and when unscoped."""
    missing: str | None = None
    """For an unscoped connection: what is wrong and how to fix it (the refusal's text)."""
    cwd: str | None = None
    """The directory the shim started in, as its preamble said (shown when unscoped)."""

    @classmethod
    def default(cls) -> ProjectScope:
        """No preamble: a raw MCP client (or the benchmark) works in the ``default`` project."""
        return cls(Namespace(DEFAULT_PROJECT_ID))

    @classmethod
    def of_root(cls, root: str, cwd: str | None = None) -> ProjectScope:
        ref = project_ref(root)
        return cls(ref.namespace, ref.root, cwd=cwd)

    @classmethod
    def unscoped(cls, cwd: str | None) -> ProjectScope:
        return cls(None, missing=no_project_message(cwd), cwd=cwd)

    @classmethod
    def of(cls, identity: Preamble | None) -> ProjectScope:
        """The scope a connection's first line gives it. Blocking (resolves the root)."""
        if identity is None:
            return cls.default()
        if identity.project is None:
            return cls.unscoped(identity.cwd)
        return cls.of_root(identity.project, identity.cwd)

    @property
    def project_id(self) -> str | None:
        return None if self.namespace is None else self.namespace.project_id

    @property
    def announced(self) -> bool:
        """Whether the connection's project goes to the registry the jobs walk (a named root)."""
        return self.namespace is not None and self.root is not None

    def refusal(self, needs_project: bool) -> str | None:
        """The refusal of a call on this connection, or ``None`` when it may go ahead."""
        return self.missing if needs_project else None
