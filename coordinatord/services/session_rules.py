"""Sessions' pure logic, no I/O (as task_rules.py is for tasks): the context document and its
merge, the turn records of the history, compact JSON that is always valid UTF-8."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

from coordinatord.errors import ConflictError, InvalidArgumentError
from coordinatord.keyspace import session_key

Role = Literal["user", "assistant", "system", "tool"]
ROLES: tuple[Role, ...] = get_args(Role)


def merge_context(current: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level merge: fields in ``patch`` replace those in ``current``; ``None`` removes one.

    Nested values are taken whole, never merged, so a nested ``null`` stays a ``null``.
    """
    merged = dict(current)
    for name, value in patch.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


def dumps(value: Any) -> str:
    """Compact JSON that is always valid UTF-8 (a lone surrogate is kept as a ``\\u`` escape)."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError as exc:  # NaN or Infinity: not JSON
        raise InvalidArgumentError(f"value is not valid JSON: {exc}") from None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text


def encode_turn(role: str, message: str, ts: str, agent: str | None) -> str:
    return dumps({"role": role, "message": message, "ts": ts, "agent": agent})


def turn_record(raw: str) -> dict[str, Any]:
    """A stored turn as a dict; a malformed entry is kept whole as the message, not dropped."""
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if isinstance(value, dict) and all(isinstance(value.get(f), str) for f in ("role", "message", "ts")):
        return value
    return {"role": "unknown", "message": raw, "ts": "", "agent": None}


def str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class SessionDocument:
    """The context document at ``agent:context:<id>``."""

    session_id: str
    version: int
    ttl: int | None  # None: the default (sessions.ttl_s)
    created_at: str | None
    updated_at: str | None
    created_by: str | None
    last_agent: str | None
    context: dict[str, Any]

    @classmethod
    def parse(cls, raw: str, session_id: str) -> SessionDocument:
        """The stored document; a plain JSON object (the seed's style) is a version-0 context."""
        try:
            value = json.loads(raw)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise ConflictError(
                f"{session_key(session_id)} holds a value that is not a JSON object (written with "
                "redis_set?); the session tools cannot use it — remove it with redis_del or use "
                "another session_id"
            )
        version, context, ttl = value.get("version"), value.get("context"), value.get("ttl")
        if not (isinstance(version, int) and not isinstance(version, bool) and isinstance(context, dict)):
            return cls(session_id, 0, None, None, None, None, None, value)
        return cls(
            session_id=session_id,
            version=version,
            ttl=ttl if isinstance(ttl, int) and not isinstance(ttl, bool) and ttl > 0 else None,
            created_at=str_or_none(value.get("createdAt")),
            updated_at=str_or_none(value.get("updatedAt")),
            created_by=str_or_none(value.get("createdBy")),
            last_agent=str_or_none(value.get("lastAgent")),
            context=context,
        )

    def encode(self, default_ttl: int) -> tuple[str, int]:
        """The document's JSON (fields in the order the append script relies on) and the size
        of its context in bytes.
        """
        head = dumps(
            {
                "sessionId": self.session_id,
                "version": self.version,
                "ttl": self.ttl if self.ttl is not None else default_ttl,
                "createdAt": self.created_at,
                "updatedAt": self.updated_at,
                "createdBy": self.created_by,
                "lastAgent": self.last_agent,
            }
        )
        context = dumps(self.context)
        return f'{head[:-1]},"context":{context}}}', len(context.encode("utf-8"))


def next_document(
    current: SessionDocument | None,
    session_id: str,
    patch: Mapping[str, Any],
    ttl: int | None,
    now: str,
    agent: str | None,
) -> SessionDocument:
    """The document after a ``session_save`` of ``patch`` (``ttl`` None keeps the session's)."""
    if current is None:
        return SessionDocument(session_id, 1, ttl, now, now, agent, agent, merge_context({}, patch))
    return replace(
        current,
        version=current.version + 1,
        ttl=ttl if ttl is not None else current.ttl,
        created_at=current.created_at or now,
        updated_at=now,
        created_by=current.created_by or agent,
        last_agent=agent,
        context=merge_context(current.context, patch),
    )
