"""The rules of a project id, and how a git remote URL becomes one. Pure: no I/O.

A project id is part of every key of its project (``coord:{<id>}:…``, the braces a Redis
Cluster hash tag) and of ``SCAN MATCH`` patterns over them, so it must hold no brace, no glob
character (``* ? [ ] \\``), no colon, no whitespace and no control character. The rule
(:func:`project_id_problem`): 1-:data:`MAX_PROJECT_ID` characters of letters, digits and
``. _ - ~ % /``, starting with a letter or digit, with no empty, ``.`` or ``..`` part between
slashes. Path-hash ids (``app-1a2b3c4d5e``), ``default`` and ids made from remotes
(``github.com/org/app``) all follow it.

A remote URL becomes ``<host>/<path>`` (:func:`normalise_remote`):

- every spelling git accepts for a network remote gives one id: scp-like
  ``git@github.com:org/app.git``, ``ssh://git@github.com:22/org/app.git``,
  ``https://user:token@github.com/org/app``, ``git://``, ``git+ssh://``, a transport helper's
  ``helper::https://…``, and a bare ``github.com/org/app/`` all are ``github.com/org/app``;
- the user, the password or token, the port, the query and the fragment are dropped (a port or a
  protocol is how this machine reaches the repository, not which repository it is, and a
  credential must never end up in a key name or a log);
- the host is lower-cased, and a few hosts' SSH-over-443 names are the host itself
  (``ssh.github.com`` is ``github.com``);
- the path keeps its case, except on hosts known to treat owner and repository names without
  regard to case (:data:`CASE_INSENSITIVE_HOSTS`), where it is lower-cased too; empty and ``.``
  parts, trailing slashes and one trailing ``.git`` are dropped; every part is percent-encoded
  the one canonical way (``%20`` and a space are one spelling), so no unsafe character survives;
- a local remote (``/srv/git/app.git``, ``../app``, ``file://…``, ``C:\\repo``) names a folder of
  one machine, not a repository that travels: it gives no id (``None``), and the caller falls
  back to the path hash.

An id longer than :data:`MAX_PROJECT_ID` (deep GitLab subgroups) is cut and given a hash of the
whole, so it stays unique and the same on every machine.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from urllib.parse import quote, unquote

from coordinatord.errors import InvalidArgumentError

MAX_PROJECT_ID = 200
"""Characters in a project id (path-hash ids are at most 51)."""

CASE_INSENSITIVE_HOSTS = frozenset({"github.com", "gitlab.com", "bitbucket.org", "codeberg.org"})
"""Hosts that resolve ``Org/App`` and ``org/app`` to one repository: their paths are lower-cased.
Elsewhere case is kept, since a self-hosted server on a case-sensitive file system may hold both."""

HOST_ALIASES = {
    "ssh.github.com": "github.com",
    "altssh.gitlab.com": "gitlab.com",
    "altssh.bitbucket.org": "bitbucket.org",
}
"""SSH-over-port-443 names of hosts: the same repositories under another name."""

RULE = (
    f"1-{MAX_PROJECT_ID} characters of letters, digits, '.', '_', '-', '~', '%' or '/', starting with "
    "a letter or digit, with no empty, '.' or '..' part between slashes (it becomes part of every "
    "Redis key of the project, so no braces, glob characters, colons, spaces or control characters)"
)

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~%/-]*")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_HELPER = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)::(.*)", re.DOTALL)
# git's scp-like syntax: [user@]host:path, where the colon comes before any slash.
_SCP = re.compile(r"(?:[^@/]*@)?(\[[^\]/]*\]|[^:/\[\]]+):(.*)", re.DOTALL)
_HOSTNAME = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def project_id_problem(value: str) -> str | None:
    """What is wrong with ``value`` as a project id (``None``: nothing)."""
    if not value:
        return "it is empty"
    if len(value) > MAX_PROJECT_ID:
        return f"it is {len(value)} characters long"
    if not _ID.fullmatch(value):
        return "it holds a character outside the rule, or does not start with a letter or digit"
    if any(part in ("", ".", "..") for part in value.split("/")):
        return "it has an empty, '.' or '..' part between slashes"
    return None


def is_project_id(value: str) -> bool:
    return project_id_problem(value) is None


def fit(value: str) -> str:
    """``value`` cut to :data:`MAX_PROJECT_ID` characters, with a hash of the whole so that two
    long ids sharing a beginning stay apart (and the cut never leaves a trailing ``/`` or ``.``)."""
    if len(value) <= MAX_PROJECT_ID:
        return value
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:10]
    head = value[: MAX_PROJECT_ID - len(digest) - 1].rstrip("/.%")
    return f"{head}-{digest}"


def subproject_id(base: str, parts: Sequence[str]) -> str:
    """The id of a folder ``parts`` below the repository whose id is ``base``: ``base/a/b``, so a
    project rooted in a subfolder travels like its repository does."""
    if not parts:
        return base
    return fit("/".join([base, *(quote(part, safe="") for part in parts)]))


def normalise_remote(url: str) -> str | None:
    """The project id a remote URL names, or ``None`` for a local remote or one that cannot be
    understood (see the module for the rule)."""
    text = url.strip()
    if not text or _CONTROL.search(text):
        return None
    helper = _HELPER.fullmatch(text)
    if helper is not None and "/" not in helper.group(1):
        text = helper.group(2)  # "<helper>::<address>": the address names the repository
    scheme = _SCHEME.match(text)
    if scheme is not None:
        if scheme.group(1).lower() == "file":
            return None
        rest = text[scheme.end() :]
        authority, slash, path = rest.partition("/")
        path = slash + path
        path = path.split("?", 1)[0].split("#", 1)[0]
        host = _host_of(authority)
    elif (scp := _SCP.fullmatch(text)) is not None and len(scp.group(1)) > 1:
        # A one-letter "host" is a DOS drive (C:\repo, C:/repo): a local path.
        host, path = scp.group(1), scp.group(2)
    else:
        first, slash, path = text.partition("/")
        if not slash or not _HOSTNAME.fullmatch(first.lower()):
            return None  # a relative or absolute local path
        host = first
    return _join(host, path)


def _host_of(authority: str) -> str:
    """The host of a URL's authority, without user, password and port."""
    host = authority.rpartition("@")[2]
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.partition(":")[0]


def _join(host: str, path: str) -> str | None:
    host = host.strip("[]").lower().rstrip(".")
    host = HOST_ALIASES.get(host, host)
    if not host:
        return None
    parts = [part for part in unquote(path).split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        return None  # no repository named, or a path that climbs out of the host's tree
    if parts[-1].lower().endswith(".git"):
        parts[-1] = parts[-1][:-4]
        if not parts[-1]:
            parts.pop()
    if not parts:
        return None
    if host in CASE_INSENSITIVE_HOSTS:
        parts = [part.lower() for part in parts]
    value = fit("/".join(quote(part, safe="") for part in [host, *parts]))
    return value if is_project_id(value) else None


def check_project_id(value: str, argument: str = "project") -> str:
    """``value`` when it is a project id, else :class:`InvalidArgumentError` naming the rule."""
    problem = project_id_problem(value)
    if problem is not None:
        raise InvalidArgumentError(
            f"argument {argument!r} is not a project id ({problem}): got {value[:80]!r}; "
            f"a project id is {RULE}"
        )
    return value
