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
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import structlog

from coordinatord.errors import SecretFoundError
from coordinatord.secrets_scan import Finding, SecretScanner, redact
from coordinatord.settings import SecretSettings

log = structlog.get_logger("coordinatord.secrets")

MAX_LISTED = 10  # findings a refusal or warning names; the count says how many more
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
        listed = "; ".join(f"{f.kind} in {field!r} at character {f.start}" for field, f in hits[:MAX_LISTED])
        if len(hits) > MAX_LISTED:
            listed += f"; and {len(hits) - MAX_LISTED} more"
        fields = [(f.kind, field, f.start) for field, f in hits]
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
