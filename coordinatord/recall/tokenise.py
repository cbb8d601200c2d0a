"""Code-aware tokenising for recall: words, identifiers, paths and error codes to index terms.

Agent history mixes prose with code: ``fetchUserProfile``, ``retry_backoff_s``,
``coordinatord/store/redis.py``, ``asyncio.TimeoutError``, ``E1234``, ``HTTP 503``. A plain word
tokeniser either keeps such a thing whole (and a question that says "user profile" misses it) or
splits it and loses the exact identifier. Here each compound is kept whole *and* split into its
parts, so both a search for the exact name and one for its words find it; the whole name is rare and
so weighs more when it matches.

Prose words are lower-cased, stop words dropped and the rest stemmed with the Snowball English
stemmer ("flaky"/"flakiness", "decided"/"decision" meet). Numbers are kept as they are: in this
history they are ports, status codes, issue numbers and versions, all worth matching exactly.

Everything here is pure: no I/O, no state beyond a bounded stem cache.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache

import snowballstemmer

# A raw token: runs of letters/digits/underscore joined by the separators code uses inside one name
# (path slashes, dots, colons, hyphens). A trailing separator (end of a sentence) is not taken.
_RAW = re.compile(r"[^\W_]\w*(?:[./:\-]+\w+)*|_+\w+", re.UNICODE)
_SEPARATORS = re.compile(r"[./:\-_]+")
# camelCase and PascalCase boundaries, acronyms kept together ("HTTPServer" -> HTTP, Server),
# letters and digits apart except in error-code shapes (E1234, ORA-00942 keeps its number part).
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+|[^\W\d_]+", re.UNICODE)
_ERROR_CODE = re.compile(r"^[A-Za-z]{1,4}\d{2,6}$")

# Function words that carry no topic. Kept small and explicit: words such as "not", "why" or "when"
# are stop words in most lists and here too (BM25 gains nothing from them on questions), but words
# that name things in code ("type", "file", "test", "set", "get", "key") are not.
_STOP_WORD_TEXT = """
    a about above after again against all am an and any are aren't as at be because been before
    being below between both but by can can't cannot could couldn't did didn't do does doesn't doing
    don't down during each few for from further had hadn't has hasn't have haven't having he he'd
    he'll he's her here here's hers herself him himself his how how's i i'd i'll i'm i've if in into
    is isn't it it's its itself let's me more most mustn't my myself no nor not of off on once only
    or other ought our ours ourselves out over own same shan't she she'd she'll she's should
    shouldn't so some such than that that's the their theirs them themselves then there there's
    these they they'd they'll they're they've this those through to too under until up very was
    wasn't we we'd we'll we're we've were weren't what what's when when's where where's which while
    who who's whom why why's with won't would wouldn't you you'd you'll you're you've your yours
    yourself yourselves also just yes yeah ok okay oh really will shall may might must s t d ll m re
    ve
"""
STOP_WORDS: frozenset[str] = frozenset(_STOP_WORD_TEXT.split())

_STEMMER = snowballstemmer.stemmer("english")


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """The Snowball English stem of a lower-case word (cached: a corpus repeats its words)."""
    result: str = _STEMMER.stemWord(word)
    return result


def _word_term(word: str) -> str | None:
    """One lower-case word part to its index term, or None for a stop word or a lone letter."""
    if word.isdigit():
        return word
    if len(word) < 2 or word in STOP_WORDS:
        return None
    return stem(word)


def _parts(raw: str) -> list[str]:
    """The word parts of one raw token, split at separators and case/digit boundaries."""
    parts: list[str] = []
    for piece in _SEPARATORS.split(raw):
        if not piece:
            continue
        if _ERROR_CODE.match(piece):
            # E1234, SIGTERM-ish codes: the code itself and its number both match.
            parts.append(piece)
            parts.append("".join(ch for ch in piece if ch.isdigit()))
            continue
        parts.extend(_CAMEL.findall(piece))
    return parts


def iter_terms(text: str) -> Iterator[tuple[int, str]]:
    """(position, term) pairs of ``text``; the whole of a compound shares its first part's position.

    Positions count raw tokens (words and whole identifiers), so a proximity measure sees an
    identifier as one place however many parts it splits into.
    """
    for position, match in enumerate(_RAW.finditer(text)):
        raw = match.group().strip("_")
        if not raw:
            continue
        parts = _parts(raw)
        emitted: set[str] = set()
        if len(parts) > 1:
            # The whole compound, lower-cased and without separators, as one rare term: an exact
            # identifier, path or dotted name matches itself strongly.
            whole = _SEPARATORS.sub("_", raw.lower())
            emitted.add(whole)
            yield position, whole
        for part in parts:
            term = _word_term(part.lower())
            if term is not None and term not in emitted:
                emitted.add(term)
                yield position, term


def tokenise(text: str) -> list[str]:
    """The index terms of ``text`` in order (compounds whole and in parts, stemmed, no stop words)."""
    return [term for _, term in iter_terms(text)]


_PLAIN = re.compile(r"(?u)\b\w\w+\b")


def plain_tokenise(text: str) -> list[str]:
    """The baseline tokeniser of common BM25 libraries: lower-cased words of two or more word
    characters, stop words dropped, Snowball stems; no knowledge of code. For comparisons only."""
    return [stem(word) for word in _PLAIN.findall(text.lower()) if word not in STOP_WORDS]
