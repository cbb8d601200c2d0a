"""Which project a root is: an id that comes from the repository, so that clones of one
repository at different paths and on different machines are one project.

The first of these that gives an id wins (:func:`resolve`):

1. ``project.id`` in ``.coordinatord.toml`` at the root, committed with the repository::

       [project]
       id = "acme-app"

   (for forks whose ``origin`` differs from one developer to the next, or to name a project on
   purpose); at the top of the repository holding the root when the root is a folder below it.
2. The repository's ``origin`` remote, normalised (:func:`coordinatord.identity.rules.normalise_remote`):
   ``git@github.com:org/app.git`` and ``https://github.com/org/app`` are ``github.com/org/app``.
3. The canonical path, hashed as before (:func:`coordinatord.keyspace.project_id_for`): a folder
   outside any repository, a repository without ``origin`` or with a local one, or a Mercurial,
   Jujutsu-without-git or Subversion checkout.

A root below the top of its repository (a shim's ``--project`` naming a subfolder, or the nearest
marker being a subfolder's ``.kilocode``) gets the repository's id and the folder's path below it:
``github.com/org/app/packages/web``.

A ``.coordinatord.toml`` that is present but wrong (not TOML, ``project.id`` breaking the id
rule, an unknown key under ``[project]``) raises :class:`~coordinatord.errors.ProjectFileError`
naming the file and the rule: it is never skipped in favour of the next source, because the file
exists to make every clone agree, and falling back would silently split this clone off into a
namespace of its own.

Every file is read with :mod:`coordinatord.safe_read`: one that is there but is not a regular
file (a FIFO, a device, a symlink loop) or is too large is a :class:`ProjectFileError` naming
it, never a hang and never a silent fall-back. The caps are fixed, not settings: every daemon,
command and machine must read the same id from the same files.

Blocking (a few ``stat`` and small reads): call it in a worker thread from async code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from coordinatord import paths, safe_read
from coordinatord.errors import FileRefusedError, ProjectFileError
from coordinatord.identity import gitconfig
from coordinatord.identity.rules import RULE, normalise_remote, project_id_problem, subproject_id
from coordinatord.keyspace import project_id_for

PROJECT_FILE: Final = ".coordinatord.toml"
MAX_PROJECT_FILE_BYTES = 64 * 1024
PROJECT_KEYS = frozenset({"id"})
"""The keys ``[project]`` may hold; any other is refused (a misspelt ``Id`` must not be ignored)."""

Source = Literal[".coordinatord.toml", "origin", "path"]
SOURCES: tuple[Source, ...] = (".coordinatord.toml", "origin", "path")
OTHER_VCS = (".hg", ".jj", ".svn")
"""Markers of repositories that have no git config: the search for one stops there."""


@dataclass(frozen=True, slots=True)
class ProjectIdentity:
    """A root's project id and where it came from."""

    root: str
    """The canonical root."""
    project_id: str
    source: Source

    @property
    def path_id(self) -> str:
        """The id this root had before ids came from repositories (its path hash): the namespace
        ``coordinatord projects migrate`` moves from."""
        return project_id_for(self.root)


def resolve(root: str, home: Path | None = None) -> ProjectIdentity:
    """The project an absolute root is, in any spelling of it (see the module). ``home``: where
    the user's git config is (default: the home directory)."""
    canonical = paths.canonical_root(root)
    here = Path(canonical)
    configured = read_project_file(here)
    if configured is not None:
        return ProjectIdentity(canonical, configured, ".coordinatord.toml")
    found = find_repository(here)
    if found is not None:
        top, git = found
        below = here.relative_to(top).parts
        base: str | None = None
        source: Source = "origin"
        if below:
            base = read_project_file(top)
            source = ".coordinatord.toml"
        if base is None:
            url = gitconfig.origin_url(git, _home(home))
            base = None if url is None else normalise_remote(url)
            source = "origin"
        if base is not None:
            return ProjectIdentity(canonical, subproject_id(base, below), source)
    return ProjectIdentity(canonical, project_id_for(canonical), "path")


def find_repository(start: Path) -> tuple[Path, Path] | None:
    """The nearest git repository at or above ``start`` (its top and its git dir), as far up as
    the home directory or ``/`` (not into them: a dotfiles repository does not make every folder
    in the home directory one project). ``None`` also when another kind of repository comes first."""
    stops = {Path(start.anchor)}
    home = _home(None)
    if home is not None:
        stops.add(Path(paths.canonical_root(home)))
    for candidate in (start, *start.parents):
        if candidate in stops:
            return None
        if os.path.lexists(candidate / ".git"):
            git = gitconfig.git_dir(candidate)
            return None if git is None else (candidate, git)
        if any(os.path.lexists(candidate / marker) for marker in OTHER_VCS):
            return None
    return None


def read_project_file(directory: Path) -> str | None:
    """``project.id`` of ``directory``'s ``.coordinatord.toml``: ``None`` when there is no file,
    or it has no ``[project]`` table or no ``id`` in it; :class:`ProjectFileError` when it is
    there and wrong, or not a regular file of at most :data:`MAX_PROJECT_FILE_BYTES`."""
    path = directory / PROJECT_FILE
    try:
        data = safe_read.read_bytes(
            path, MAX_PROJECT_FILE_BYTES, setting=f"{MAX_PROJECT_FILE_BYTES // 1024} KiB: it holds one id"
        )
    except FileNotFoundError:
        return None
    except FileRefusedError as exc:
        raise ProjectFileError(f"{exc}; {PROJECT_FILE} must be a small TOML file") from None
    except OSError as exc:
        raise ProjectFileError(f"{path} cannot be read: {exc.strerror}; make it readable") from None
    return project_id_from_file(path, data)


def project_id_from_file(path: Path, data: bytes) -> str | None:
    """``project.id`` of a ``.coordinatord.toml`` whose bytes are ``data`` (see
    :func:`read_project_file`); ``path`` is named in every error."""
    import tomllib

    if len(data) > MAX_PROJECT_FILE_BYTES:
        raise ProjectFileError(f"{path} is larger than {MAX_PROJECT_FILE_BYTES // 1024} KiB; it holds one id")
    try:
        document: dict[str, Any] = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProjectFileError(f"{path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProjectFileError(f"{path} is not valid TOML: {exc}") from None
    project = document.get("project")
    if project is None:
        return None
    example = '\n  [project]\n  id = "acme-app"'
    if not isinstance(project, dict):
        raise ProjectFileError(f"{path}: 'project' must be a table, like{example}")
    unknown = sorted(set(project) - PROJECT_KEYS)
    if unknown:
        raise ProjectFileError(
            f"{path}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} in "
            f"[project]; the only key is 'id', like{example}"
        )
    value = project.get("id")
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProjectFileError(f"{path}: project.id must be a string, like{example}")
    problem = project_id_problem(value)
    if problem is not None:
        raise ProjectFileError(
            f"{path}: project.id {value[:80]!r} is not a project id: {problem}; it must be {RULE}"
        )
    return value


def _home(home: Path | None) -> Path | None:
    if home is not None:
        return home
    try:
        return Path.home()
    except (KeyError, RuntimeError):  # no HOME and no passwd entry
        return None
