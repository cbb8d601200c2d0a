"""Which project a root names, and which project a connection works in: the two rules that
decide every project id.

- :func:`project_ref` is the one way a root becomes a project id. Whatever spelling reaches the
  daemon (a preamble, a ``[[projects]]`` entry, ``--project`` of an operator command, a control
  command's ``project``), it is canonicalised with :func:`coordinatord.paths.canonical_root`,
  then the id comes from the repository (:mod:`coordinatord.identity`: ``.coordinatord.toml``,
  else the ``origin`` remote, else the hash of the canonical path), so ``/x/A/../B``, ``/x/B/``,
  ``//x/B``, a symlink to ``/x/B`` — and a clone of the same repository elsewhere — are one
  project with one namespace.
- :class:`ProjectScope` is what a connection's preamble made of it: a project (its namespace and
  root), the ``default`` project (no preamble at all: a raw MCP client), or *no project* (a shim
  that found none, ``project: null``, or a root whose ``.coordinatord.toml`` is wrong). An
  unscoped connection may call only the tools that need no project (``redis_ping``); every other
  call is refused with :attr:`ProjectScope.missing`, which says what is wrong and how to fix it.

Pure apart from the root's resolution (a few ``lstat`` calls and small reads): tested without
servers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from coordinatord import identity, paths
from coordinatord.errors import ProjectFileError
from coordinatord.identity import Source
from coordinatord.keyspace import DEFAULT_PROJECT_ID, Namespace, project_id_for
from coordinatord.preamble import Preamble


@dataclass(frozen=True, slots=True)
class ProjectRef:
    """A project named by its root: the canonical root, its id and where the id came from."""

    root: str
    project_id: str
    source: Source = "path"

    @property
    def namespace(self) -> Namespace:
        return Namespace(self.project_id)

    @property
    def path_id(self) -> str:
        """The id the root had before ids came from repositories: the old namespace to migrate."""
        return project_id_for(self.root)


def project_ref(root: str) -> ProjectRef:
    """The project an absolute root names, whatever its spelling. Blocking (resolves symlinks,
    reads the repository's files); :class:`ProjectFileError` for a wrong ``.coordinatord.toml``."""
    found = identity.resolve(root)
    return ProjectRef(found.root, found.project_id, found.source)


def project_refs(roots: list[str]) -> tuple[list[ProjectRef], list[str]]:
    """The projects of several roots (``[[projects]]`` entries), and the problems of those whose
    ``.coordinatord.toml`` is wrong: one bad file leaves the others known and the daemon up."""
    refs: list[ProjectRef] = []
    problems: list[str] = []
    for root in roots:
        try:
            refs.append(project_ref(root))
        except ProjectFileError as exc:
            problems.append(str(exc))
    return refs, problems


@dataclass(frozen=True, slots=True)
class IdNote:
    """What an operator is told about a known project's id (``status``, ``top``, ``projects list``)."""

    source: Source | None
    """Where the id came from; ``None`` when that cannot be told here (the root is on another host)."""
    resolves_to: str | None = None
    """The id the root resolves to now, when it is another one (the old namespace of a root that
    has an ``origin`` or a ``.coordinatord.toml`` since): its keys can be moved with
    ``coordinatord projects migrate``."""
    problem: str | None = None
    """Why the root resolves to no id now (a wrong ``.coordinatord.toml``)."""

    def as_dict(self) -> dict[str, str | None]:
        return {"id_source": self.source, "resolves_to": self.resolves_to, "id_problem": self.problem}


def id_note(project_id: str, root: str, local: bool) -> IdNote:
    """Where a known project's id came from, telling it by resolving the root again when it is on
    this host (``local``). Blocking."""
    was_path = project_id == project_id_for(root)
    if not local:
        return IdNote("path" if was_path else None)
    try:
        ref = project_ref(root)
    except ProjectFileError as exc:
        return IdNote("path" if was_path else None, problem=str(exc))
    if ref.project_id == project_id:
        return IdNote(ref.source)
    return IdNote("path" if was_path else None, resolves_to=ref.project_id)


PROJECT_FILE_FIX = "fix or remove the file, then restart the editor's MCP server (its shim reconnects)"


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
    id_source: Source | None = None
    """Where the project id came from (``.coordinatord.toml``, ``origin``, ``path``); ``None``
    in the default project and when unscoped."""

    @classmethod
    def default(cls) -> ProjectScope:
        """No preamble: a raw MCP client (or the benchmark) works in the ``default`` project."""
        return cls(Namespace(DEFAULT_PROJECT_ID))

    @classmethod
    def of_root(cls, root: str, cwd: str | None = None) -> ProjectScope:
        try:
            ref = project_ref(root)
        except ProjectFileError as exc:
            # Served, but with no project: falling back to the origin or path id would quietly
            # split this clone from the others (the file exists to make them agree), and refusing
            # the connection would leave the editor with no tool to say why.
            return cls.unreadable(exc, cwd)
        return cls(ref.namespace, ref.root, cwd=cwd, id_source=ref.source)

    @classmethod
    def unreadable(cls, problem: Exception, cwd: str | None = None) -> ProjectScope:
        """A root whose id cannot be read (a wrong ``.coordinatord.toml``, a file that is not safe
        to read or did not answer in time): served with no project, saying why."""
        return cls(None, missing=f"this editor's shim has no project: {problem}; {PROJECT_FILE_FIX}", cwd=cwd)

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
