"""Finds high-confidence secrets in text: pure functions, no I/O, standard library only.

What it looks for (each a *kind*, the word refusals and ``[REDACTED:<kind>]`` use):

==================== ==========================================================================
private_key          a PEM or OpenSSH private key block (``-----BEGIN … PRIVATE KEY-----``, up
                     to its END line or the end of the text) with a body
aws_access_key_id    ``AKIA``/``ASIA``/``ABIA``/``ACCA`` + 16 upper-case letters or digits
aws_secret_key       40 base64 characters after ``aws_secret_access_key``-style names, or within
                     200 characters after an access key id
github_token         ``ghp_``/``gho_``/``ghu_``/``ghs_``/``ghr_`` + 36 or more, ``github_pat_`` +
                     22 or more
gitlab_token         ``glpat-`` + 20 or more
slack_token          ``xoxa-``/``xoxb-``/``xoxp-``/``xoxr-``/``xoxs-`` tokens, and Slack webhook URLs
openai_key           ``sk-…`` (also ``sk-proj-``, ``sk-svcacct-``, ``sk-ant-``) of 20 or more
                     characters mixing upper case, lower case and digits
stripe_key           ``sk_live_``/``rk_live_`` + 24 or more
url_credentials      the password of ``scheme://user:password@host`` (not ``${VAR}`` style
                     placeholders, not ``***``)
keyword_secret       the value after ``password``/``passwd``/``secret``/``token``/``api_key``/… and
                     ``=`` or ``:`` (JSON's ``"password": "…"`` too) when it looks random: 8 or
                     more characters of three character classes, or 16 or more of high entropy
                     with a digit; not a placeholder (``${VAR}``, ``<token>``), not a call
==================== ==========================================================================

Why our own regular expressions and not Yelp's ``detect-secrets`` (measured on this machine,
1 kB of prose, detect-secrets 1.5.0): importing it takes ~70 ms and brings ``requests`` and
``PyYAML``; a scan costs ~2.8 ms with its default plugins and ~460 µs with only the specific
ones; its entropy plugins report UUIDs, git SHAs, base64 images and plain prose (a
false-positive storm that would refuse ordinary task notes); its OpenAI plugin misses
``sk-proj-`` keys; it reports lines, not character offsets; and its last release is from 2024.
This module imports in well under a millisecond and scans 1 kB in tens of microseconds
(``bench/secrets_scan.py``), because every pattern starts with a literal anchor and the
entropy test runs only on a keyword's value.

Allowlist: ``allow`` patterns (regular expressions) are matched with ``re.search`` against
each found secret's text; a match drops that finding (for a known test fixture, say).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MARKER = "[REDACTED:{kind}]"
_MARKER_PREFIX = "[REDACTED:"


@dataclass(frozen=True)
class Finding:
    """One secret: its kind and where it is in the scanned string (``start``/``end``, in
    characters, end excluded). Never its text: a finding may be logged or shown."""

    kind: str
    start: int
    end: int


# One pattern per kind, each run only when one of its anchors (lower-case literals) occurs in
# the lower-cased text: a substring test costs far less than a regex engine trying a dozen
# alternatives at every position, and most writes contain none of the anchors.
_KEYWORDS = (
    r"(?i:password|passwd|pwd|passphrase|secret|client_?secret|token|auth_?token"
    r"|access_?token|api_?key|apikey|access_?key|private_?key)"
)
_PATTERNS: tuple[tuple[str, tuple[str, ...], re.Pattern[str]], ...] = (
    (
        "private_key",
        ("private key",),
        re.compile(
            r"-----BEGIN[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----"
            r"[\s\S]*?(?:-----END[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----|\Z)"
        ),
    ),
    (
        "aws_access_key_id",
        ("akia", "asia", "abia", "acca"),
        re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Za-z0-9])"),
    ),
    (
        "aws_secret_key",
        ("secret",),
        re.compile(
            r"(?i:aws_?secret_?(?:access_?)?key|secret_?access_?key)[\"']?\s*[:=]\s*[\"']?"
            r"(?P<v>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])"
        ),
    ),
    (
        "github_token",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
        re.compile(r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})"),
    ),
    ("gitlab_token", ("glpat-",), re.compile(r"(?<![A-Za-z0-9_])glpat-[A-Za-z0-9_\-]{20,255}")),
    (
        "slack_token",
        ("xox", "hooks.slack.com"),
        re.compile(
            r"(?<![A-Za-z0-9_])(?:xox[abprs]-[A-Za-z0-9\-]{10,255}"
            r"|https://hooks\.slack\.com/services/[A-Za-z0-9/]{20,})"
        ),
    ),
    ("openai_key", ("sk-",), re.compile(r"(?<![A-Za-z0-9_\-])sk-[A-Za-z0-9_\-]{20,255}")),
    ("stripe_key", ("_live_",), re.compile(r"(?<![A-Za-z0-9_])[sr]k_live_[A-Za-z0-9]{24,255}")),
    (
        "url_credentials",
        ("://",),
        re.compile(r"(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]{0,30}://[^\s:/?#@'\"]+:(?P<v>[^\s@/'\"]+)@"),
    ),
    (
        "keyword_secret",
        ("pass", "pwd", "secret", "token", "key"),
        re.compile(r"(?<![A-Za-z0-9])" + _KEYWORDS + r"[\"']?\s*[:=]\s*[\"']?(?P<v>[^\s\"',;&<>]{8,255})"),
    ),
)

_ANY_ANCHOR = re.compile("|".join(re.escape(anchor) for _, anchors, _ in _PATTERNS for anchor in anchors))
"""Every pattern's anchors in one search, for short texts (a call's identifiers): most have
none, and one search costs 0.2-0.6 µs where a test per pattern costs ~3 µs (a call's
identifiers: 7 -> 2 µs, ``bench/secrets_scan.py``). On 1 kB the per-pattern tests are as fast
or faster (the alternation is tried at every position), so long texts skip it."""
_SHORT = 256

_ASSIGNED = frozenset({"keyword_secret", "aws_secret_key"})
"""Kinds whose pattern needs ``=`` or ``:`` after the name: without either in the text, their
(case-insensitive, many-alternative) regex cannot match and is not run."""

# A name (a JSON object's key) under which a whole string value is taken as the secret.
KEYWORD_NAME = re.compile(
    r"(?i)(?:^|[_\-.])(?:password|passwd|pwd|passphrase|secret|client_?secret|token|auth_?token"
    r"|access_?token|api_?key|apikey|access_?key|private_?key)$"
)

_AWS_SECRET_NEAR = re.compile(r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_AWS_NEAR_CHARS = 200
_PEM_BODY = re.compile(r"[A-Za-z0-9+/]{40}")
_PLACEHOLDER = re.compile(r"^(?:\$|%|<|\{|\*+$|x+$|X+$|\.+$)|(?i:^(?:changeme|redacted|password|secret)$)")


def _has_mixed_case_and_digit(text: str) -> bool:
    return (
        any(c.isupper() for c in text) and any(c.islower() for c in text) and any(c.isdigit() for c in text)
    )


def _entropy(text: str) -> float:
    """Shannon entropy in bits per character."""
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def looks_random(value: str) -> bool:
    """Whether a keyword's value reads as a secret rather than a word: 8 or more characters of
    at least three classes (lower, upper, digit, other), or 16 or more with a digit and entropy
    of 3.5 bits or more per character (a hex or base64 token)."""
    # A placeholder, a marker of ours, or code (a call: ``token = get_token(user)``) is no secret.
    if value.startswith(_MARKER_PREFIX) or _PLACEHOLDER.search(value) or "(" in value:
        return False
    classes = sum(
        (
            any(c.islower() for c in value),
            any(c.isupper() for c in value),
            any(c.isdigit() for c in value),
            any(not c.isalnum() for c in value),
        )
    )
    if len(value) >= 8 and classes >= 3:
        return True
    has_digit = any(c.isdigit() for c in value)
    return len(value) >= 16 and has_digit and classes >= 2 and _entropy(value) >= 3.5


def _accept(kind: str, value: str) -> bool:
    """The checks a regular expression cannot say well."""
    if kind == "private_key":
        return _PEM_BODY.search(value) is not None
    if kind == "openai_key":
        return _has_mixed_case_and_digit(value[3:])
    if kind == "url_credentials":
        return not _PLACEHOLDER.search(value) and not value.startswith(_MARKER_PREFIX)
    if kind == "keyword_secret":
        return looks_random(value)
    return True


class SecretScanner:
    """The detector with its allowlist compiled once; :meth:`scan` is safe to share."""

    def __init__(self, allow: Sequence[str] = ()) -> None:
        self._allow = [re.compile(pattern) for pattern in allow]

    def _allowed(self, value: str) -> bool:
        return any(pattern.search(value) for pattern in self._allow)

    def scan(self, text: str) -> list[Finding]:
        """The secrets in ``text``, in order, not overlapping."""
        if len(text) < 8:
            return []
        lowered = text.lower()
        if len(text) <= _SHORT and _ANY_ANCHOR.search(lowered) is None:
            return []
        found: list[Finding] = []
        assigns = "=" in text or ":" in text
        for kind, anchors, pattern in _PATTERNS:
            if not any(anchor in lowered for anchor in anchors):
                continue
            if kind in _ASSIGNED and not assigns:
                continue  # "name = value" or "name: value": prose that merely says "passed" has neither
            for match in pattern.finditer(text):
                # The secret is group "v" where the pattern names one (the text after a name).
                start, end = match.span("v") if pattern.groupindex else match.span()
                value = text[start:end]
                if _accept(kind, value) and not self._allowed(value):
                    found.append(Finding(kind, start, end))
                    if kind == "aws_access_key_id":
                        found += self._aws_secret_after(text, end)
        if len(found) > 1:
            found = _without_overlaps(found)
        return found

    def _aws_secret_after(self, text: str, after: int) -> list[Finding]:
        # "An access key id and its secret next to it": the secret has no prefix of its own,
        # so only a 40-character base64 run close after an id counts.
        near = _AWS_SECRET_NEAR.search(text, after, after + _AWS_NEAR_CHARS)
        if near is None or not _has_mixed_case_and_digit(near.group()) or self._allowed(near.group()):
            return []
        return [Finding("aws_secret_key", near.start(), near.end())]

    def scan_named(self, name: str, value: str) -> list[Finding]:
        """:meth:`scan`, plus the whole of ``value`` when ``name`` (a JSON key) names a secret
        (``{"password": "…"}``) and the value looks random."""
        found = self.scan(value)
        if not found and KEYWORD_NAME.search(name) and looks_random(value) and not self._allowed(value):
            found = [Finding("keyword_secret", 0, len(value))]
        return found


def _without_overlaps(found: list[Finding]) -> list[Finding]:
    kept: list[Finding] = []
    for finding in sorted(found, key=lambda f: (f.start, -f.end)):
        if kept and finding.start < kept[-1].end:
            continue
        kept.append(finding)
    return kept


def redact(text: str, found: Iterable[Finding]) -> str:
    """``text`` with each finding replaced by ``[REDACTED:<kind>]``."""
    parts: list[str] = []
    position = 0
    for finding in sorted(found, key=lambda f: f.start):
        parts += [text[position : finding.start], MARKER.format(kind=finding.kind)]
        position = finding.end
    parts.append(text[position:])
    return "".join(parts)
