"""Path globs of file reservations: normalization, matching, and exact overlap, checked against
an independent matcher (regular expressions per segment, recursion over segments)."""

from __future__ import annotations

import re
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinatord import pathglob
from coordinatord.pathglob import GlobError, escape, example, matches, normalize, overlaps

# --- An independent matcher -------------------------------------------------------------------


def _class_regex(charset: tuple[bool, tuple[tuple[int, int], ...]]) -> str:
    negated, ranges = charset
    body = "".join(f"{re.escape(chr(lo))}-{re.escape(chr(hi))}" for lo, hi in ranges)
    if negated:
        return f"[^/{body}]"
    return f"(?![/])[{body}]" if body else "(?!)"


@cache
def _segment_regex(segment: str) -> re.Pattern[str]:
    parts = []
    for token in pathglob._tokens(segment):
        parts.append("[^/]*" if token == pathglob.STAR else _class_regex(token))  # type: ignore[arg-type]
    return re.compile("".join(parts))


def reference_match(pattern: str, path: str) -> bool:
    """Does the normalized glob match the path: '**' any number of segments, others by regex."""
    segments, names = pattern.split("/"), path.split("/")

    @cache
    def go(i: int, j: int) -> bool:
        if i == len(segments):
            return j == len(names)
        if segments[i] == "**":
            return go(i + 1, j) or (j < len(names) and go(i, j + 1))
        return j < len(names) and bool(_segment_regex(segments[i]).fullmatch(names[j])) and go(i + 1, j + 1)

    return go(0, 0)


# --- Strategies: small alphabets, so that globs meet often -------------------------------------

PIECES = ["a", "b", "c", "*", "?", "[ab]", "[!a]", "[a-b]", "[^bc]", "\\*", "[", "]", "é"]
segment_st = st.one_of(st.just("**"), st.lists(st.sampled_from(PIECES), min_size=1, max_size=4).map("".join))
glob_st = st.lists(segment_st, min_size=1, max_size=4).map("/".join).map(normalize)
name_st = st.lists(st.sampled_from(["a", "b", "c", "*", "é", "["]), min_size=1, max_size=4).map("".join)
path_st = st.lists(name_st, min_size=1, max_size=5).map("/".join)


def instance(pattern: str, data: st.DataObject) -> str:
    """A random path the glob matches (built from its tokens), to aim soundness checks well."""
    out = []
    for segment in pathglob.parse(pattern):
        if segment == pathglob.GLOBSTAR:
            out += data.draw(st.lists(name_st, max_size=2))
            continue
        chars = []
        for token in segment:
            if token == pathglob.STAR:
                chars.append(data.draw(st.text(alphabet="abc", max_size=2)))
            else:
                assert not isinstance(token, str)
                negated, ranges = token
                pool = [chr(c) for lo, hi in ranges for c in range(lo, min(hi, lo + 5) + 1)]
                choices = [c for c in "abcxé*[" if (c in pool) != negated] if negated else pool
                chars.append(data.draw(st.sampled_from(choices or ["z"])))
        out.append("".join(chars) or "x")
    return "/".join(out)


@settings(max_examples=400, deadline=None)
@given(glob_st, glob_st)
def test_overlap_is_symmetric_and_its_example_matches_both(p: str, q: str) -> None:
    """overlaps(p, q) == overlaps(q, p), and whenever they overlap the example path both match."""
    assert overlaps(p, q) == overlaps(q, p)
    found = example(p, q)
    assert (found is not None) == overlaps(p, q)
    if found is not None:
        assert reference_match(p, found), (p, q, found)
        assert reference_match(q, found), (p, q, found)


@settings(max_examples=400, deadline=None)
@given(glob_st, glob_st, st.data())
def test_a_path_matched_by_both_means_overlap(p: str, q: str, data: st.DataObject) -> None:
    """Soundness of 'no overlap': a path drawn from p (or at random) that q matches too proves overlap."""
    for path in (instance(p, data), data.draw(path_st)):
        if reference_match(p, path) and reference_match(q, path):
            assert overlaps(p, q), (p, q, path)


@settings(max_examples=400, deadline=None)
@given(glob_st, path_st)
def test_matches_agrees_with_the_reference(p: str, path: str) -> None:
    """matches(glob, path) is the reference matcher's answer, escaped characters included."""
    assert matches(p, path) == reference_match(p, path)


@settings(max_examples=200, deadline=None)
@given(path_st, path_st)
def test_two_literal_paths_overlap_iff_equal(a: str, b: str) -> None:
    """Escaped literal paths overlap exactly when they are the same path."""
    assert overlaps(normalize(escape(a)), normalize(escape(b))) == (a == b)


@pytest.mark.parametrize(
    ("p", "q", "expected"),
    [
        ("src/**", "src/app.py", True),
        ("src/**", "src", True),
        ("src/**", "srcx/app.py", False),
        ("src/", "src/a/b/c.py", True),
        ("src/*.py", "src/a/b.py", False),
        ("src/*.py", "src/**/*.py", True),
        ("**/test_*.py", "tests/unit/test_a.py", True),
        ("**/*.ts", "**/*.js", False),
        ("*.py", "*.js", False),
        ("a/[bc]d", "a/cd", True),
        ("a/[!b]", "a/b", False),
        ("a/?", "a/bb", False),
        ("pages/\\[id\\].tsx", "pages/i.tsx", False),
        ("pages/[id].tsx", "pages/i.tsx", True),
        ("a/**/b", "a/b", True),
        ("**", "anything/at/all", True),
        ("docs/*", "docs/a/b", False),
        ("a*b", "*c", False),
        ("a*b", "*c*", True),
        ("a*", "*b", True),
        ("[a-c]x", "[!b]x", True),
        ("[b]x", "[!b]x", False),
    ],
)
def test_known_answers(p: str, q: str, expected: bool) -> None:
    """Cases the docs name (directory globs, stars within segments, classes, escapes) overlap as stated."""
    assert overlaps(normalize(p), normalize(q)) is expected


@pytest.mark.parametrize(
    ("raw", "normal"),
    [("./src/app.py", "src/app.py"), ("src/", "src/**"), ("a/**/**/b", "a/**/b"), (".", "**"), ("./", "**")],
)
def test_normalize(raw: str, normal: str) -> None:
    """Leading ./ is dropped, a trailing / means the folder, runs of ** are one."""
    assert normalize(raw) == normal


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("", "empty"),
        ("/etc/passwd", "absolute"),
        ("a//b", "empty segment"),
        ("a/../b", "'..' segment"),
        ("a/\tb", "printable"),
        ("[z-a]", "matches nothing"),
        ("x" * 600, "limit"),
        ("\ud800", "printable"),
    ],
)
def test_malformed_globs_are_refused_with_the_reason(raw: str, says: str) -> None:
    """Every refusal says what is wrong, for the tool's error to name the argument with it."""
    with pytest.raises(GlobError, match=re.escape(says)):
        normalize(raw)


# --- The corpus the Lua implementation is pinned to (tests/integration/test_files_service.py) ---

CORPUS_GLOBS = [
    "src/**",
    "src",
    "src/app.py",
    "src/*.py",
    "src/**/*.py",
    "**/test_*.py",
    "**/*.ts",
    "**",
    "*.py",
    "a/[bc]d",
    "a/cd",
    "a/[!b]",
    "a/b",
    "a/?",
    "a/bb",
    "pages/\\[id\\].tsx",
    "pages/[id].tsx",
    "pages/i.tsx",
    "a/**/b",
    "docs/*",
    "docs/a/b",
    "a*b",
    "*c*",
    "[a-c]x",
    "[!b]x",
    "[b]x",
    "é/[à-ü]*",
    "é/ö.txt",
    "[+-0]",
    "x[]]y",
    "x]y",
    "[!]]",
    "]",
]


def test_the_corpus_is_normalized() -> None:
    """The corpus is stored as it would be (normalized), so Python and Lua read the same globs."""
    assert [normalize(g) for g in CORPUS_GLOBS] == CORPUS_GLOBS
