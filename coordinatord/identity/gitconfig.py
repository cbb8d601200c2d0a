"""A repository's ``origin`` URL, read from git's own files: no ``git`` process.

The daemon resolves a project root on every connection, and starting ``git`` would cost more
than the whole rest of a connection's set-up; reading the few files it would read is
microseconds. What is read:

- the repository: ``<top>/.git``, a directory, or a *file* ``gitdir: <path>`` (a worktree made
  by ``git worktree add``, a submodule) pointing at the real one;
- its ``commondir`` (a worktree's git dir holds only its own HEAD and index; the shared config
  lives in the main repository's git dir, which ``commondir`` names relative to it);
- ``config`` there, and ``config.worktree`` of the worktree, for ``remote.origin.url`` (the first
  value, as ``git remote get-url origin`` shows);
- ``url.<base>.insteadOf`` rules from those files and the user's and the system's git config
  (``~/.gitconfig``, ``~/.config/git/config``, ``/etc/gitconfig``), applied as git applies them
  (the longest matching prefix wins): a remote spelled ``gh:org/app`` with a rule
  ``[url "git@github.com:"] insteadOf = gh:`` is ``github.com/org/app`` on every machine that
  has the rule, as it is to git.

Not read: ``[include]``/``[includeIf]`` files, ``$GIT_DIR``/``$XDG_CONFIG_HOME`` (the daemon
never reads the environment of whoever started it), remotes other than ``origin``. Files are
read with :mod:`coordinatord.safe_read`: one that is missing or unreadable (permissions) counts
as absent; one that is not a regular file (a FIFO, a device, a symlink loop) or is larger than
:data:`MAX_CONFIG_BYTES` is a :class:`~coordinatord.errors.ProjectFileError` naming it (falling
back to another id would silently split the project).

:func:`parse` is pure and understands git's config syntax: ``[section]``, ``[section
"subsection"]``, the old ``[section.subsection]``, case-insensitive section and key names,
quoted values with ``\\"``, ``\\\\``, ``\\n``, ``\\t`` and ``\\b``, ``#`` and ``;`` comments,
and lines continued with a trailing backslash.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from coordinatord import safe_read
from coordinatord.errors import FileRefusedError, ProjectFileError

MAX_CONFIG_BYTES = 1 << 20
ORIGIN_URL = "remote.origin.url"

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
_ESCAPES = {"n": "\n", "t": "\t", "b": "\b", '"': '"', "\\": "\\"}


def parse(text: str) -> list[tuple[str, str | None]]:
    """Every ``(name, value)`` of a git config file, in order. ``name`` is
    ``section[.subsection].key`` with section and key lower-cased (a ``[section "sub"]``
    subsection keeps its case); a key without ``=`` has the value ``None`` (boolean true).
    Lines git would refuse are skipped."""
    entries: list[tuple[str, str | None]] = []
    section: str | None = None
    for line in _logical_lines(text):
        rest = line.lstrip()
        if rest.startswith("["):
            section, rest = _header(rest)
            rest = rest.lstrip()
        if not rest or rest[0] in "#;" or section is None:
            continue
        match = _NAME.match(rest)
        if match is None:
            continue
        key = match.group().lower()
        after = rest[match.end() :].lstrip()
        if not after or after[0] in "#;":
            entries.append((f"{section}.{key}", None))
        elif after[0] == "=":
            value = _value(after[1:])
            if value is not None:
                entries.append((f"{section}.{key}", value))
    return entries


def _logical_lines(text: str) -> Iterator[str]:
    """Physical lines joined where one ends in a backslash outside quotes (a continuation)."""
    pending = ""
    for raw in text.splitlines():
        line = pending + raw
        if _continues(line):
            pending = line[:-1]
            continue
        pending = ""
        yield line
    if pending:
        yield pending


def _continues(line: str) -> bool:
    quoted = escaped = False
    for ch in line:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch in "#;" and not quoted:
            return False
    return escaped


def _header(line: str) -> tuple[str | None, str]:
    """The section a ``[...]`` header opens (``None`` for a malformed one), and what follows it
    on the line (git allows a key there)."""
    body = line[1:]
    quote_at = body.find('"')
    close = body.find("]")
    if quote_at == -1 or (close != -1 and close < quote_at):
        if close == -1:
            return None, ""
        name = body[:close].strip()
        # The old [section.subsection] form: all of it case-insensitive.
        if not name or not all(_NAME.fullmatch(part) or part == "" for part in name.split(".")):
            return None, ""
        return name.lower(), body[close + 1 :]
    name = body[:quote_at].strip()
    if not _NAME.fullmatch(name):
        return None, ""
    sub: list[str] = []
    index = quote_at + 1
    while index < len(body):
        ch = body[index]
        if ch == "\\" and index + 1 < len(body):
            sub.append(body[index + 1])
            index += 2
            continue
        if ch == '"':
            break
        sub.append(ch)
        index += 1
    else:
        return None, ""
    tail = body[index + 1 :].lstrip()
    if not tail.startswith("]"):
        return None, ""
    return f"{name.lower()}.{''.join(sub)}", tail[1:]


def _value(raw: str) -> str | None:
    """A value as git reads it: quotes removed, escapes decoded, a comment outside quotes cut,
    surrounding blanks outside quotes trimmed. ``None`` for a bad escape or an open quote."""
    out: list[str] = []
    quoted = False
    kept = 0  # length of out up to the last character that is not trailing blank outside quotes
    index = 0
    while index < len(raw):
        ch = raw[index]
        if ch == "\\":
            if index + 1 >= len(raw) or raw[index + 1] not in _ESCAPES:
                return None
            out.append(_ESCAPES[raw[index + 1]])
            kept = len(out)
            index += 2
            continue
        if ch == '"':
            quoted = not quoted
            kept = len(out)
        elif not quoted and ch in "#;":
            break
        elif not quoted and ch in " \t":
            if out:  # leading blanks are dropped, inner ones kept, trailing ones trimmed below
                out.append(ch)
        else:
            out.append(ch)
            kept = len(out)
        index += 1
    if quoted:
        return None
    return "".join(out[:kept])


def read_text(path: Path) -> str | None:
    """A config file's text, or ``None`` when it is missing or cannot be read;
    :class:`ProjectFileError` when it is not a regular file or too large."""
    try:
        data = safe_read.read_bytes(path, MAX_CONFIG_BYTES, setting="1 MiB for git's files")
    except FileRefusedError as exc:
        raise ProjectFileError(f"{exc}; the project's id is read from it") from None
    except OSError:
        return None
    return data.decode("utf-8", "replace")


def git_dir(top: Path) -> Path | None:
    """The git dir of the repository whose work tree is ``top``: ``top/.git``, or where the
    ``gitdir:`` line of a ``.git`` file points (relative to ``top``). ``None``: not a repository.
    A ``.git`` that is neither a directory nor a regular file is refused by :func:`read_text`."""
    dot_git = top / ".git"
    if dot_git.is_dir():
        return dot_git
    text = read_text(dot_git)
    if text is None:
        return None
    first = text.splitlines()[0] if text else ""
    if not first.startswith("gitdir:"):
        return None
    target = Path(first[len("gitdir:") :].strip())
    target = target if target.is_absolute() else top / target
    return target if target.is_dir() else None


def common_dir(git: Path) -> Path:
    """Where the repository's shared files (its ``config``) are: ``commondir`` of a worktree's
    git dir (relative to it), else the git dir itself."""
    text = read_text(git / "commondir")
    if text is None or not text.strip():
        return git
    target = Path(text.strip())
    target = target if target.is_absolute() else git / target
    return target if target.is_dir() else git


def user_config_files(home: Path | None) -> list[Path]:
    """The user's and the system's git config files, the ones git reads besides the repository's."""
    files = [Path("/etc/gitconfig")]
    if home is not None:
        files += [home / ".config" / "git" / "config", home / ".gitconfig"]
    return files


def origin_url(git: Path, home: Path | None) -> str | None:
    """``remote.origin.url`` of the repository whose git dir is ``git``, with ``insteadOf``
    rules applied; ``None`` when it has no origin."""
    common = common_dir(git)
    repository_files = [common / "config"]
    if git != common:
        repository_files.append(git / "config.worktree")
    entries: list[tuple[str, str | None]] = []
    for path in repository_files:
        text = read_text(path)
        if text is not None:
            entries += parse(text)
    url = next((value for name, value in entries if name == ORIGIN_URL and value), None)
    if url is None:
        return None
    for path in user_config_files(home):
        text = read_text(path)
        if text is not None:
            entries += parse(text)
    return rewrite(url, entries)


def rewrite(url: str, entries: list[tuple[str, str | None]]) -> str:
    """``url`` with the longest matching ``url.<base>.insteadOf`` prefix replaced by its base."""
    best: tuple[int, str, str] | None = None
    for name, value in entries:
        if value is None or not name.startswith("url.") or not name.endswith(".insteadof"):
            continue
        base = name[len("url.") : -len(".insteadof")]
        if url.startswith(value) and (best is None or len(value) > best[0]):
            best = (len(value), value, base)
    if best is None:
        return url
    return best[2] + url[best[0] :]
