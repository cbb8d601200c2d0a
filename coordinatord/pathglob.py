"""Path globs of file reservations, and when two of them overlap. Pure logic, standard library
only: the git pre-commit hook (:mod:`coordinatord.guard`) imports it.

A glob names files relative to the project root, ``/``-separated. It is read segment by segment:

- ``**`` as a whole segment matches zero or more segments (``src/**`` matches ``src`` and
  everything under it; ``**/test_*.py`` matches ``test_a.py`` and ``a/b/test_a.py``);
- in any other segment, ``*`` matches any run of characters (none included), ``?`` one
  character, ``[abc]``, ``[a-z]`` one of a set, ``[!abc]`` (or ``[^abc]``) one not in it, and
  ``\\x`` the character ``x`` itself (``pages/\\[id\\].tsx`` names that one file); a ``[``
  with no closing ``]`` in its segment is itself; no segment ever matches a ``/``;
- a trailing ``/`` means the whole folder (``src/`` is ``src/**``); ``./`` in front is dropped.

Two globs **overlap** when some path matches both, and this module decides that exactly: the
two globs are automata over segments (and each segment an automaton over characters), and a
common path exists iff their product reaches its accepting state. A literal path is a glob
without special characters, so a path overlaps a glob iff the glob matches it, and two literal
paths overlap iff they are equal. ``services/lua/files_glob.lua`` is the same algorithm in Lua
(the reservation script decides conflicts inside the server); a test pins both to the same
answers on a corpus.
"""

from __future__ import annotations

from functools import lru_cache

MAX_PATTERN_BYTES = 512

UNIVERSE = (0x20, 0x10FFFF)
"""The characters a path segment may hold: printable ones (paths are checked to be printable),
never ``/``."""
SLASH = ord("/")
GLOBSTAR = "**"

# A token of a segment: STAR, or a set of characters (negated?, ((lo, hi), ...)). A segment is
# a tuple of tokens, or GLOBSTAR.
STAR = "*"
CharSet = tuple[bool, tuple[tuple[int, int], ...]]
Token = str | CharSet
Segment = str | tuple[Token, ...]
ANY: CharSet = (True, ())


class GlobError(ValueError):
    """A glob is malformed; the message says what is wrong with it (the caller names the argument)."""


def normalize(pattern: str) -> str:
    """The glob as it is stored and compared, or :class:`GlobError`: relative, no empty, ``.`` or
    ``..`` segment, a trailing ``/`` spelt ``/**``, runs of ``**`` segments made one."""
    if not pattern:
        raise GlobError("is empty")
    if not pattern.isprintable():
        raise GlobError("must be printable text (no control characters, newlines or tabs)")
    try:
        size = len(pattern.encode("utf-8"))
    except UnicodeEncodeError:
        raise GlobError("is not valid Unicode text (a lone surrogate)") from None
    if size > MAX_PATTERN_BYTES:
        raise GlobError(f"is {size} bytes; the limit is {MAX_PATTERN_BYTES}")
    if pattern.startswith("/"):
        raise GlobError("is absolute: name files relative to the project root, e.g. src/app.py")
    while pattern.startswith("./"):
        pattern = pattern[2:].lstrip("/")
    if pattern in ("", "."):
        pattern = GLOBSTAR
    if pattern.endswith("/"):
        pattern += GLOBSTAR
    segments: list[str] = []
    for segment in pattern.split("/"):
        if segment == "":
            raise GlobError("has an empty segment ('//')")
        if segment in (".", ".."):
            raise GlobError(f"has a {segment!r} segment; name paths from the project root")
        if segment == GLOBSTAR and segments and segments[-1] == GLOBSTAR:
            continue
        _tokens(segment)  # refuses what can match nothing
        segments.append(segment)
    return "/".join(segments)


def escape(path: str) -> str:
    """A literal path as a glob that matches it alone (``*?[\\`` escaped)."""
    return "".join("\\" + ch if ch in "*?[\\" else ch for ch in path)


def _tokens(segment: str) -> tuple[Token, ...]:
    tokens: list[Token] = []
    k, end = 0, len(segment)
    while k < end:
        ch = segment[k]
        if ch == "*":
            if not tokens or tokens[-1] != STAR:  # '**' inside a segment is one '*'
                tokens.append(STAR)
            k += 1
        elif ch == "?":
            tokens.append(ANY)
            k += 1
        elif ch == "\\" and k + 1 < end:
            tokens.append((False, ((ord(segment[k + 1]),) * 2,)))
            k += 2
        elif ch == "[":
            parsed = _char_class(segment, k)
            if parsed is None:
                tokens.append((False, ((ord("["),) * 2,)))
                k += 1
            else:
                charset, k = parsed
                tokens.append(charset)
        else:
            tokens.append((False, ((ord(ch),) * 2,)))
            k += 1
    return tuple(tokens)


def _char_class(segment: str, start: int) -> tuple[CharSet, int] | None:
    """The class opening at ``segment[start]`` (a ``[``) and the index after it; ``None`` when it
    never closes (the ``[`` is then a literal)."""
    j, end = start + 1, len(segment)
    negated = j < end and segment[j] in "!^"
    if negated:
        j += 1
    ranges: list[tuple[int, int]] = []
    first = True
    while j < end and (segment[j] != "]" or first):
        first = False
        low, j = _class_char(segment, j)
        high = low
        if j + 1 < end and segment[j] == "-" and segment[j + 1] != "]":
            high, j = _class_char(segment, j + 1)
            if high < low:
                raise GlobError(f"has the range {chr(low)}-{chr(high)}, which matches nothing")
        ranges.append((low, high))
    if j >= end:
        return None
    return (negated, tuple(ranges)), j + 1


def _class_char(segment: str, j: int) -> tuple[int, int]:
    if segment[j] == "\\" and j + 1 < len(segment):
        return ord(segment[j + 1]), j + 2
    return ord(segment[j]), j + 1


@lru_cache(maxsize=4096)
def parse(pattern: str) -> tuple[Segment, ...]:
    """A normalized glob's segments (see :func:`normalize`)."""
    return tuple(GLOBSTAR if s == GLOBSTAR else _tokens(s) for s in pattern.split("/"))


# --- Characters --------------------------------------------------------------------------------


def _first_outside(ranges: tuple[tuple[int, int], ...], excluded: list[tuple[int, int]]) -> int | None:
    """The smallest character in ``ranges`` (inside :data:`UNIVERSE`) that no range of
    ``excluded`` holds and that is not ``/``."""
    excluded = [*excluded, (SLASH, SLASH)]
    for low, high in ranges:
        c, high = max(low, UNIVERSE[0]), min(high, UNIVERSE[1])
        moved = True
        while c <= high and moved:
            moved = False
            for e_low, e_high in excluded:
                if e_low <= c <= e_high:
                    c, moved = e_high + 1, True
        if c <= high:
            return c
    return None


def _common_char(a: CharSet, b: CharSet) -> int | None:
    """A character both sets hold (never ``/``), or ``None``."""
    (a_neg, a_ranges), (b_neg, b_ranges) = a, b
    if a_neg and b_neg:
        # Start at 'a' so that examples read well; the rest of the universe after that.
        return _first_outside(((ord("a"), UNIVERSE[1]), UNIVERSE), [*a_ranges, *b_ranges])
    if a_neg:
        return _first_outside(b_ranges, list(a_ranges))
    if b_neg:
        return _first_outside(a_ranges, list(b_ranges))
    for a_low, a_high in a_ranges:
        for b_low, b_high in b_ranges:
            low, high = max(a_low, b_low), min(a_high, b_high)
            if low <= high:
                found = _first_outside(((low, high),), [])
                if found is not None:
                    return found
    return None


# --- The product automata ----------------------------------------------------------------------
# reach[i][j]: from state (i, j) (i tokens of one side read, j of the other) the product can
# reach its end. A STAR (GLOBSTAR) either is left (an empty move) or stays while the other
# side's token moves on over a character (segment) both accept; two STARs moving together gain
# nothing. Every move raises i or j, so filling the table from the end needs no recursion.
# `step` holds the move taken, for the witness.


def _segment_table(p: tuple[Token, ...], q: tuple[Token, ...]) -> list[list[tuple[int, int, int] | None]]:
    n, m = len(p), len(q)
    step: list[list[tuple[int, int, int] | None]] = [[None] * (m + 1) for _ in range(n + 1)]
    step[n][m] = (n, m, -1)
    for i in range(n, -1, -1):
        for j in range(m, -1, -1):
            if i == n and j == m:
                continue
            p_star = i < n and p[i] == STAR
            q_star = j < m and q[j] == STAR
            if p_star and step[i + 1][j] is not None:
                step[i][j] = (i + 1, j, -1)
            elif q_star and step[i][j + 1] is not None:
                step[i][j] = (i, j + 1, -1)
            elif i < n and j < m and not (p_star and q_star):
                ni, nj = (i if p_star else i + 1), (j if q_star else j + 1)
                if step[ni][nj] is not None:
                    p_set = ANY if p_star else p[i]
                    q_set = ANY if q_star else q[j]
                    assert not isinstance(p_set, str) and not isinstance(q_set, str)
                    c = _common_char(p_set, q_set)
                    if c is not None:
                        step[i][j] = (ni, nj, c)
    return step


def segment_example(p: tuple[Token, ...], q: tuple[Token, ...]) -> str | None:
    """A path segment (never empty) both segments match, or ``None``."""
    step = _segment_table(p, q)
    if step[0][0] is None:
        return None
    out, i, j = [], 0, 0
    while (i, j) != (len(p), len(q)):
        move = step[i][j]
        assert move is not None
        i, j, c = move
        if c >= 0:
            out.append(chr(c))
    # Only two segments of stars alone meet on the empty string; they meet on "x" as well.
    return "".join(out) or "x"


def _segment_meets(p: Segment, q: Segment) -> str | None:
    if p == GLOBSTAR and q == GLOBSTAR:
        return "x"
    if p == GLOBSTAR:
        p = (STAR,)
    if q == GLOBSTAR:
        q = (STAR,)
    assert not isinstance(p, str) and not isinstance(q, str)
    return segment_example(p, q)


def example(pattern: str, other: str) -> str | None:
    """A path both normalized globs match, or ``None`` when they do not overlap."""
    p, q = parse(pattern), parse(other)
    n, m = len(p), len(q)
    step: list[list[tuple[int, int, str] | None]] = [[None] * (m + 1) for _ in range(n + 1)]
    step[n][m] = (n, m, "")
    for i in range(n, -1, -1):
        for j in range(m, -1, -1):
            if i == n and j == m:
                continue
            p_star = i < n and p[i] == GLOBSTAR
            q_star = j < m and q[j] == GLOBSTAR
            if p_star and step[i + 1][j] is not None:
                step[i][j] = (i + 1, j, "")
            elif q_star and step[i][j + 1] is not None:
                step[i][j] = (i, j + 1, "")
            elif i < n and j < m and not (p_star and q_star):
                ni, nj = (i if p_star else i + 1), (j if q_star else j + 1)
                if step[ni][nj] is not None:
                    segment = _segment_meets(p[i], q[j])
                    if segment is not None:
                        step[i][j] = (ni, nj, segment)
    if step[0][0] is None:
        return None
    out, i, j = [], 0, 0
    while (i, j) != (n, m):
        move = step[i][j]
        assert move is not None
        i, j, segment = move
        if segment:
            out.append(segment)
    # Only globs of '**' alone meet on no segment at all; they meet on "x" as well.
    return "/".join(out) or "x"


@lru_cache(maxsize=65536)
def overlaps(pattern: str, other: str) -> bool:
    """Whether some path matches both normalized globs."""
    if pattern == other:
        return True
    return example(pattern, other) is not None


def matches(pattern: str, path: str) -> bool:
    """Whether the normalized glob matches the (relative, ``/``-separated) path."""
    return overlaps(pattern, escape(path))
