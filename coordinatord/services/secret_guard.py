"""``secrets.policy`` applied to what a service is about to write: the one helper every write
path calls (kv, sessions, tasks, agents, messages, files) before its single write, so a
refusal leaves the store untouched. The detector itself is :mod:`coordinatord.secrets_scan`.

- ``refuse``: :class:`~coordinatord.errors.SecretFoundError` naming each secret's kind, the
  field (an argument, or a JSON path such as ``context.db.password``) and the character offset
  in that string; the value is never echoed (nor a JSON key holding one: it appears redacted).
- ``redact``: the value comes back with each secret replaced by ``[REDACTED:<kind>]``.
- ``warn``: the value comes back as given; the warning goes to the daemon's log and to the
  call's reply (:func:`collect_notes`, which :mod:`coordinatord.server.calls` wraps each call
  in; a context variable, so no service result needs a field for it).
- ``off``: nothing is scanned.

Session archives are redacted whatever the policy unless ``secrets.archive = "keep"``
(:meth:`SecretGuard.for_archive`).

Identifiers (keys, ids, names, paths, filters: every argument a tool does not declare content)
are checked by :meth:`SecretGuard.identifiers` before a call runs or is logged, and a redacted
name would address something else, so:

- ``refuse`` and ``redact``: the call is refused (:class:`~coordinatord.errors.SecretFoundError`
  naming the argument and the kind); nothing runs, nothing is logged or recorded but the
  refusal.
- ``warn``: the call runs with the identifier as given (so it is stored as given); the reply
  gets the warning, and the daemon's log and the activity stream show it redacted
  (:mod:`coordinatord.log_scrub`).
- ``off``: nothing is scanned.

The connection's agent name (the shim's ``--agent``, or an MCP client's name) is part of
every log line and activity event of its connection, so it is refused under every policy but
``off`` (:meth:`SecretGuard.check_agent`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import structlog

from coordinatord.errors import SecretFoundError
from coordinatord.secrets_scan import MARKER, Finding, SecretScanner, redact
from coordinatord.settings import SecretSettings

log = structlog.get_logger("coordinatord.secrets")

MAX_LISTED = 10  # findings a refusal or warning names; the count says how many more
AGENT_FIELD = "agent name"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_notes: ContextVar[list[str] | None] = ContextVar("coordinatord_secret_notes", default=None)


@contextmanager
def collect_notes() -> Iterator[list[str]]:
    """The warnings (``secrets.policy = "warn"``) raised while the block runs, for its reply."""
    notes: list[str] = []
    token = _notes.set(notes)
    try:
        yield notes
    finally:
        _notes.reset(token)


Hit = tuple[str, Finding]  # (field, finding)


@dataclass(frozen=True)
class IdentifierWarning:
    """A call's identifiers hold secrets and ``secrets.policy = "warn"``: ``secrets`` maps each
    secret's text to its marker (for :func:`coordinatord.log_scrub.scrubbing`); ``note`` is the
    warning for its reply, which names arguments and kinds, never the text."""

    secrets: dict[str, str]
    note: str


class SecretGuard:
    def __init__(self, settings: SecretSettings | None = None) -> None:
        settings = settings or SecretSettings()
        self.policy = settings.policy
        self._scanner = SecretScanner(settings.allow)
        self._keep_archives = settings.archive == "keep"

    @property
    def scanner(self) -> SecretScanner:
        return self._scanner

    def text(self, value: str, field: str) -> str:
        """``value`` (an argument named ``field``) as it may be stored."""
        if self.policy == "off":
            return value
        found = self._scanner.scan(value)
        if not found:
            return value
        self._report([(field, f) for f in found])
        return redact(value, found) if self.policy == "redact" else value

    def texts(self, values: Sequence[str], field: str) -> list[str]:
        """Each of a list argument's strings, reported as ``field[i]``."""
        return [self.text(value, f"{field}[{index}]") for index, value in enumerate(values)]

    def json(self, value: Any, field: str) -> Any:
        """A JSON value (from ``json.loads``: dicts, lists, strings, numbers) as it may be
        stored; string values and object keys are scanned, an object key that names a secret
        (``"password"``) makes its whole string value count when it looks random."""
        if self.policy == "off":
            return value
        hits: list[Hit] = []
        _walk(self._scanner, value, field, "", hits)
        if not hits:
            return value
        self._report(hits)
        return _redacted(self._scanner, value, "") if self.policy == "redact" else value

    def identifiers(self, texts: Sequence[tuple[str, str]]) -> IdentifierWarning | None:
        """Check a call's identifiers, ``(argument, text)`` pairs: raises under refuse and
        redact; under warn, what the call must keep out of its log and add to its reply;
        ``None`` when they hold no secret (or the policy is off)."""
        if self.policy == "off" or not texts:
            return None
        hits: list[Hit] = []
        secrets: dict[str, str] = {}
        for field, text in texts:
            for finding in self._scanner.scan(text):
                hits.append((field, finding))
                secrets[text[finding.start : finding.end]] = MARKER.format(kind=finding.kind)
        if not hits:
            return None
        listed, fields = _listed(hits)
        if self.policy == "warn":
            log.warning("secret_in_identifier", findings=fields[:MAX_LISTED], policy="warn")
            note = (
                f"warning: an identifier holds a secret ({listed}); the call went ahead with it as given "
                '(secrets.policy = "warn"), so a name holding it may be stored; the daemon\'s log and the '
                "activity stream show it redacted. Rename it if it should not be shared"
            )
            return IdentifierWarning(secrets, note)
        log.info("secret_refused", findings=fields[:MAX_LISTED], identifier=True)
        raise SecretFoundError(
            f"refused: an identifier holds a secret ({listed}); nothing was done. Identifiers (keys, "
            "ids, names, paths) are never stored redacted, since that would name something else: "
            "use a name without the credential; if this is not a secret, add a pattern for it to "
            "secrets.allow",
            tuple(fields),
        )

    def check_agent(self, agent: str | None) -> None:
        """Refuse an agent name holding a secret, under every policy but ``off``: it would be in
        every log line and activity event of its connection."""
        if self.policy == "off" or not agent:
            return
        found = self._scanner.scan(agent)
        if not found:
            return
        listed, fields = _listed([(AGENT_FIELD, f) for f in found])
        log.info("secret_refused", findings=fields[:MAX_LISTED], identifier=True)
        raise SecretFoundError(
            f"refused: the agent name holds a secret ({listed}); nothing was done. Name the agent "
            "plainly (the shim's --agent, or the MCP client's name)",
            tuple(fields),
        )

    def shown(self, text: str) -> str:
        """``text`` as the log and the activity stream may show it: each secret redacted, under
        every policy but ``off`` (a log key can hold a value: message_send's subject)."""
        if self.policy == "off":
            return text
        found = self._scanner.scan(text)
        return redact(text, found) if found else text

    def for_archive(self, data: Mapping[str, Any]) -> Mapping[str, Any]:
        """A session archive's data as its file may hold it: redacted unless archive = "keep"."""
        if self._keep_archives:
            return data
        hits: list[Hit] = []
        _walk(self._scanner, data, "", "", hits)
        if not hits:
            return data
        log.info("secrets_redacted_in_archive", count=len(hits), kinds=sorted({f.kind for _, f in hits}))
        redacted: Mapping[str, Any] = _redacted(self._scanner, data, "")
        return redacted

    def _report(self, hits: list[Hit]) -> None:
        """Raise (refuse), or log the hits (and, for warn, note them for the reply)."""
        listed, fields = _listed(hits)
        if self.policy == "refuse":
            log.info("secret_refused", findings=fields[:MAX_LISTED])
            raise SecretFoundError(
                f"refused: the value holds a secret ({listed}); nothing was written. Keep credentials "
                "out of shared state (use the environment or a secret manager); if this is not a "
                "secret, add a pattern for it to secrets.allow",
                tuple(fields),
            )
        if self.policy == "warn":
            log.warning("secret_stored", findings=fields[:MAX_LISTED], policy="warn")
            notes = _notes.get()
            if notes is not None:
                notes.append(
                    f"warning: the value holds a secret ({listed}); it was stored as given "
                    '(secrets.policy = "warn") — remove it if it should not be shared'
                )
        else:
            log.info("secret_redacted", findings=fields[:MAX_LISTED])


def _listed(hits: list[Hit]) -> tuple[str, list[tuple[str, str, int]]]:
    """The hits as a refusal or warning words them (the first :data:`MAX_LISTED`), and as
    ``(kind, field, offset)`` triples: never a secret's text."""
    listed = "; ".join(f"{f.kind} in {field!r} at character {f.start}" for field, f in hits[:MAX_LISTED])
    if len(hits) > MAX_LISTED:
        listed += f"; and {len(hits) - MAX_LISTED} more"
    return listed, [(f.kind, field, f.start) for field, f in hits]


def _child(path: str, key: str) -> str:
    if _NAME.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{key!r}]"


def _walk(scanner: SecretScanner, value: Any, path: str, name: str, hits: list[Hit]) -> None:
    if isinstance(value, str):
        hits.extend((path, f) for f in scanner.scan_named(name, value))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            key_text = str(key)
            key_found = scanner.scan(key_text)
            # A key holding a secret is named redacted, so the path never echoes it.
            shown = redact(key_text, key_found) if key_found else key_text
            hits.extend((f"{_child(path, shown)} (the key)", f) for f in key_found)
            _walk(scanner, item, _child(path, shown), key_text, hits)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _walk(scanner, item, f"{path}[{index}]", "", hits)


def _redacted(scanner: SecretScanner, value: Any, name: str) -> Any:
    if isinstance(value, str):
        found = scanner.scan_named(name, value)
        return redact(value, found) if found else value
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            key_text = str(key)
            key_found = scanner.scan(key_text)
            out[redact(key_text, key_found) if key_found else key_text] = _redacted(scanner, item, key_text)
        return out
    if isinstance(value, list | tuple):
        return [_redacted(scanner, item, "") for item in value]
    return value
