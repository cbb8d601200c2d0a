"""Messages between the agents of one project: an inbox per agent, broadcasts, threads, acks.

Key layout, inside the project namespace (names in :mod:`coordinatord.keyspace`):

- ``msg:{id}`` — the message document, JSON ``{"id", "thread_id", "sent_at_ms", "sender",
  "to", "subject", "body", "importance", "ack_required"}``, TTL ``messages.ttl_s``.
- ``_idx:inbox:{agent}`` — zset id → id of the messages addressed to the agent by name.
- ``_idx:msg_broadcast`` — zset id → id of the messages sent to ``"*"``.
- ``_idx:msg_read:{agent}``, ``_idx:msg_acked:{agent}`` — the agent's read and ack state.
- ``_idx:msg_thread:{thread}`` — zset id → id: a thread's messages in order.
- ``_idx:msg_acks:{id}`` — set: who acknowledged a message sent with ``ack_required``.
- ``_seq:messages`` — the last id.

Ids are decimal strings: the server clock in µs at the send, or one more than the last id when
the clock has not moved (so unique and rising within a project, in the order sends happened;
threads are kept in that order). Every index is scored by id, so entries older than the TTL are
dropped by score as the scripts pass, and each index key's TTL is refreshed by every write.

Semantics worth knowing:

- The sender is always the connection's agent; no argument names it.
- Delivery needs no recipient online: a message waits in the store for its TTL, and the
  recipient sees it in its next session. ``not_seen`` in a send's result names recipients
  with neither a registration nor an open connection now (a misspelt name shows there).
- A broadcast is stored once and read by every agent of the project but its sender, including
  agents that first connect after it was sent, for as long as it lives: it is a notice to the
  project, not to whoever was registered at that moment (and it costs one write, not one per
  agent). At most ``messages.max_broadcasts`` are kept; a new one pushes the oldest out.
- An inbox holds at most ``messages.max_inbox`` messages addressed to the agent by name. When
  it is full, a send drops the oldest one the recipient is done with (read, and acknowledged
  if the sender asked for that); when all of them are still pending, the send is refused with
  an error naming the recipient: mail nobody has read is never dropped to make room. A send to
  several recipients is all or nothing.
- ``message_inbox`` lists headers (no bodies) and changes nothing; ``message_read`` returns
  bodies and marks read; ``message_ack`` marks read and acknowledged. Only the agent's own
  inbox can be read or marked through these (an id of someone else's message is "not found");
  ``message_thread`` shows the thread's messages the caller sent or received.

Atomicity: a send, a read and an ack are one Lua script each (``lua/message_*.lua``); the
inbox page is one read-only script, so a page is consistent and costs one round trip.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import quote, unquote

from pydantic import BaseModel, ConfigDict, Field

from coordinatord.errors import InvalidArgumentError, LimitExceededError
from coordinatord.keyspace import (
    AGENTS_INDEX,
    BROADCASTS_INDEX,
    MESSAGE_ACKED_PREFIX,
    MESSAGE_ACKS_PREFIX,
    MESSAGE_COUNTER,
    MESSAGE_PREFIX,
    MESSAGE_READ_PREFIX,
    MESSAGE_THREAD_PREFIX,
    PRESENCE_INDEX,
    Namespace,
    check_id,
    inbox_key,
    message_acked_key,
    message_acks_key,
    message_key,
    message_read_key,
    message_thread_key,
)
from coordinatord.services.secret_guard import SecretGuard
from coordinatord.services.shared import iso_timestamp, lua
from coordinatord.settings import MessageSettings
from coordinatord.store import Batch, Reply, Store

BROADCAST = "*"
INBOX_URI_SCHEME = "inbox://"
MAX_AGENT_CHARS = 128
Importance = Literal["low", "normal", "high"]
_MESSAGE_ID = re.compile(r"[0-9]{1,20}")

_SEND, _INBOX, _MARK = lua("message_send"), lua("message_inbox"), lua("message_mark")


# --- Results ----------------------------------------------------------------------------------


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True)


class MessageHeader(_Result):
    id: str
    thread_id: str
    sender: str
    to: list[str] = Field(description='recipients; ["*"] for a broadcast')
    subject: str
    importance: Importance
    ack_required: bool
    sent_at: str = Field(description="ISO 8601, UTC")
    read: bool = Field(description="you have read it (message_read or message_ack)")
    acked: bool = Field(description="you have acknowledged it (message_ack)")


class Message(MessageHeader):
    body: str
    acked_by: list[str] | None = Field(
        default=None, description="for a message you sent with ack_required: who acknowledged it"
    )


class SendResult(_Result):
    id: str
    thread_id: str
    sent_at: str
    to: list[str]
    not_seen: list[str] = Field(
        description="recipients with no registration or open connection now: delivered anyway, "
        "they read it when they next connect (check the spelling)"
    )
    dropped: int = Field(description="old messages (already read, or broadcasts) pushed out to make room")


class InboxResult(_Result):
    messages: list[MessageHeader] = Field(description="oldest first; bodies via message_read")
    more: bool = Field(description="more match: call again with since = next_since")
    next_since: str | None = Field(description="the last id listed")


class ReadResult(_Result):
    messages: list[Message]
    not_found: list[str] = Field(description="ids not in your inbox (expired, or never yours)")


class AckResult(_Result):
    acked: list[str]
    not_found: list[str] = Field(description="ids not in your inbox (expired, or never yours)")


class ThreadResult(_Result):
    thread_id: str
    messages: list[Message] = Field(description="those you sent or received, in order")
    truncated: bool = Field(description="older messages of the thread were left out")


# --- Pure rules -------------------------------------------------------------------------------


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def check_recipients(to: str | list[str], settings: MessageSettings) -> list[str]:
    """One name, a list of names, or ``"*"`` (alone): the recipients, deduplicated, in order."""
    names = [to] if isinstance(to, str) else list(to)
    if not names:
        raise InvalidArgumentError("argument 'to' must name at least one agent, or be \"*\" for every agent")
    if BROADCAST in names:
        if len(names) > 1:
            raise InvalidArgumentError("argument 'to': \"*\" (every agent) cannot be combined with names")
        return [BROADCAST]
    unique = list(dict.fromkeys(names))
    if len(unique) > settings.max_recipients:
        raise LimitExceededError(
            f"argument 'to' names {len(unique)} agents; the limit is messages.max_recipients = "
            f'{settings.max_recipients} (use "*" to reach every agent)'
        )
    for index, name in enumerate(unique):
        where = "to" if isinstance(to, str) else f"to[{index}]"
        if not name.strip() or not name.isprintable() or len(name) > MAX_AGENT_CHARS:
            raise InvalidArgumentError(
                f"argument {where!r} must be an agent name: 1-{MAX_AGENT_CHARS} printable characters; "
                f"got {name[:80]!r}"
            )
    return unique


def check_text(value: str, argument: str, limit: int, setting: str, *, empty_ok: bool) -> str:
    if not empty_ok and not value.strip():
        raise InvalidArgumentError(f"argument {argument!r} must not be empty")
    size = _size(value)
    if size > limit:
        raise LimitExceededError(
            f"argument {argument!r} is {size} bytes; the limit is messages.{setting} = {limit}"
        )
    return value


def check_message_id(value: str, argument: str) -> str:
    if not _MESSAGE_ID.fullmatch(value):
        raise InvalidArgumentError(
            f"argument {argument!r} must be a message id (digits, as message_send or message_inbox "
            f"gave it); got {value[:80]!r}"
        )
    return value


def check_ids(ids: Sequence[str], settings: MessageSettings) -> list[str]:
    if not ids:
        raise InvalidArgumentError("argument 'ids' must list at least one message id")
    if len(ids) > settings.max_ids:
        raise LimitExceededError(
            f"argument 'ids' has {len(ids)} ids; the limit is messages.max_ids = {settings.max_ids}"
        )
    return list(dict.fromkeys(check_message_id(value, f"ids[{i}]") for i, value in enumerate(ids)))


def inbox_uri(agent: str) -> str:
    """``inbox://<agent>``, the name percent-encoded (an agent name may hold any printable text)."""
    return INBOX_URI_SCHEME + quote(agent, safe="")


def agent_from_uri(uri: str) -> str:
    """The agent an ``inbox://<agent>`` URI names."""
    name = unquote(uri[len(INBOX_URI_SCHEME) :]) if uri.startswith(INBOX_URI_SCHEME) else ""
    if not name:
        raise InvalidArgumentError(
            f"resource URI {uri[:120]!r} is not inbox://<agent>, e.g. inbox://kilocode"
        )
    return name


def sender_field(agent: str) -> str:
    """How a document spells its sender: the scripts find a sender by this exact text."""
    return '"sender":' + json.dumps(agent, ensure_ascii=False) + ","


def document_fields(
    sender: str, to: list[str], subject: str, body: str, importance: str, ack_required: bool
) -> str:
    """The document after its id, thread and time (which the send script puts first), as JSON
    without the opening brace; the sender first, as :func:`sender_field` spells it."""
    rest = json.dumps(
        {"to": to, "subject": subject, "body": body, "importance": importance, "ack_required": ack_required},
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return sender_field(sender) + rest[1:]


def _parse(doc: str) -> dict[str, Any]:
    data = json.loads(doc)
    if not isinstance(data, dict):
        raise ValueError("not a message document")
    return data


def _header_fields(data: dict[str, Any], read: bool, acked: bool) -> dict[str, Any]:
    importance = data.get("importance")
    return {
        "id": str(data.get("id", "")),
        "thread_id": str(data.get("thread_id", "")),
        "sender": str(data.get("sender", "")),
        "to": [str(name) for name in data.get("to") or []],
        "subject": str(data.get("subject", "")),
        "importance": importance if importance in ("low", "normal", "high") else "normal",
        "ack_required": data.get("ack_required") is True,
        "sent_at": iso_timestamp(int(data.get("sent_at_ms") or 0) / 1000),
        "read": read,
        "acked": acked,
    }


# --- The service ------------------------------------------------------------------------------


class MessageService:
    def __init__(self, store: Store, settings: MessageSettings, guard: SecretGuard | None = None) -> None:
        self._store = store
        self._guard = guard or SecretGuard()
        self._settings = settings
        self._send = store.script(_SEND)
        self._inbox = store.script(_INBOX, exactly_once=False)  # reads only
        self._mark = store.script(_MARK)

    @property
    def settings(self) -> MessageSettings:
        return self._settings

    def _agent_keys(self, ns: Namespace, agent: str) -> list[str]:
        return [
            ns.key(inbox_key(agent)),
            ns.key(BROADCASTS_INDEX),
            ns.key(message_read_key(agent)),
            ns.key(message_acked_key(agent)),
        ]

    async def send(
        self,
        ns: Namespace,
        sender: str,
        to: str | list[str],
        subject: str,
        body: str,
        thread_id: str | None = None,
        importance: Importance = "normal",
        ack_required: bool = False,
    ) -> SendResult:
        """Store the message and deliver it to ``to`` (names, or ``"*"``), as ``sender``."""
        settings = self._settings
        recipients = check_recipients(to, settings)
        # Before the size checks, so a secret is named as one whatever its length.
        subject = self._guard.text(subject, "subject")
        body = self._guard.text(body, "body")
        check_text(subject, "subject", settings.max_subject_bytes, "max_subject_bytes", empty_ok=False)
        check_text(body, "body", settings.max_body_bytes, "max_body_bytes", empty_ok=True)
        if thread_id is not None:
            check_id(thread_id, "thread_id")
        broadcast = recipients == [BROADCAST]
        named = [] if broadcast else recipients
        keys = [
            ns.key(MESSAGE_COUNTER),
            ns.key(BROADCASTS_INDEX),
            ns.key(AGENTS_INDEX),
            ns.key(PRESENCE_INDEX),
            *ns.keys(inbox_key(name) for name in named),
        ]
        args: list[str | int] = [
            ns.key(MESSAGE_PREFIX),
            ns.key(MESSAGE_THREAD_PREFIX),
            ns.key(MESSAGE_READ_PREFIX),
            ns.key(MESSAGE_ACKED_PREFIX),
            document_fields(sender, recipients, subject, body, importance, ack_required),
            thread_id or "",
            settings.ttl_s,
            settings.max_inbox,
            settings.max_broadcasts,
            1 if broadcast else 0,
            *named,
        ]
        reply = await self._send(keys, args)
        if not reply[0]:
            raise LimitExceededError(
                f"argument 'to': the inbox of {reply[2]!r} is full: {settings.max_inbox} messages "
                "(messages.max_inbox) it has not read yet (or not acknowledged, when asked); "
                "nothing was sent. Try again once it has read some, or they expire "
                f"(messages.ttl_s = {settings.ttl_s})"
            )
        return SendResult(
            id=str(reply[1]),
            thread_id=str(reply[2]),
            sent_at=iso_timestamp(int(reply[3]) / 1000),
            to=recipients,
            not_seen=[str(name) for name in reply[5:]],
            dropped=int(reply[4]),
        )

    async def inbox(
        self,
        ns: Namespace,
        agent: str,
        *,
        unread_only: bool = True,
        since: str | None = None,
        limit: int = 50,
    ) -> InboxResult:
        """Headers of ``agent``'s messages after ``since`` (an id), oldest first; marks nothing."""
        if since is not None:
            check_message_id(since, "since")
        if limit > self._settings.max_page:
            raise LimitExceededError(
                f"argument 'limit' is {limit}; the limit is messages.max_page = {self._settings.max_page}"
            )
        reply = await self._inbox(
            self._agent_keys(ns, agent),
            [
                ns.key(MESSAGE_PREFIX),
                sender_field(agent),
                since or "",
                limit,
                1 if unread_only else 0,
                self._settings.ttl_s,
            ],
        )
        headers: list[MessageHeader] = []
        for i in range(1, len(reply), 5):
            _id, doc, read, acked, _broadcast = reply[i : i + 5]
            try:
                data = _parse(doc)
            except ValueError:
                continue  # a document overwritten by hand with something else
            headers.append(MessageHeader(**_header_fields(data, bool(read), bool(acked))))
        last = str(reply[-5]) if len(reply) > 1 else None
        return InboxResult(messages=headers, more=bool(reply[0]), next_since=last)

    async def _marked(
        self, ns: Namespace, agent: str, ids: Sequence[str], ack: bool
    ) -> tuple[list[Message], list[str]]:
        wanted = check_ids(ids, self._settings)
        reply = await self._mark(
            self._agent_keys(ns, agent),
            [
                ns.key(MESSAGE_PREFIX),
                ns.key(MESSAGE_ACKS_PREFIX),
                agent,
                sender_field(agent),
                1 if ack else 0,
                self._settings.ttl_s,
                *wanted,
            ],
        )
        found: list[Message] = []
        missing: list[str] = []
        for i in range(0, len(reply), 3):
            message_id, doc, acked = str(reply[i]), reply[i + 1], bool(reply[i + 2])
            try:
                data = _parse(doc) if doc is not None else None
            except ValueError:
                data = None
            if data is None:
                missing.append(message_id)
                continue
            found.append(Message(**_header_fields(data, True, acked), body=str(data.get("body", ""))))
        return found, missing

    async def read(self, ns: Namespace, agent: str, ids: Sequence[str]) -> ReadResult:
        """The messages ``ids`` of ``agent``'s inbox, with bodies; they count as read from now."""
        found, missing = await self._marked(ns, agent, ids, ack=False)
        return ReadResult(messages=found, not_found=missing)

    async def ack(self, ns: Namespace, agent: str, ids: Sequence[str]) -> AckResult:
        """Acknowledge (and mark read) the messages ``ids`` of ``agent``'s inbox."""
        found, missing = await self._marked(ns, agent, ids, ack=True)
        return AckResult(acked=[message.id for message in found], not_found=missing)

    async def thread(self, ns: Namespace, agent: str, thread_id: str) -> ThreadResult:
        """The newest ``messages.max_thread`` messages of a thread that ``agent`` sent or
        received, in order, with its read state and (for its own sends) who acknowledged."""
        check_id(thread_id, "thread_id")
        limit = self._settings.max_thread
        ids = await self._store.zrange(ns.key(message_thread_key(thread_id)), -(limit + 1), -1)
        truncated = len(ids) > limit
        ids = ids[-limit:]
        if not ids:
            return ThreadResult(thread_id=thread_id, messages=[], truncated=False)
        batch = Batch()
        docs = batch.mget(ns.keys(message_key(i) for i in ids))
        read = batch.zmscore(ns.key(message_read_key(agent)), ids)
        acked = batch.zmscore(ns.key(message_acked_key(agent)), ids)
        await self._store.run(batch)
        visible: list[tuple[dict[str, Any], bool, bool]] = []
        for doc, was_read, was_acked in zip(docs.value, read.value, acked.value, strict=True):
            if doc is None:
                continue
            try:
                data = _parse(doc)
            except ValueError:
                continue
            to = data.get("to") or []
            if data.get("sender") == agent or agent in to or to == [BROADCAST]:
                visible.append((data, was_read is not None, was_acked is not None))
        ack_sets: dict[str, Reply[Any]] = {}
        batch = Batch()
        for data, _, _ in visible:
            if data.get("sender") == agent and data.get("ack_required") is True:
                ack_sets[str(data["id"])] = batch.raw("SMEMBERS", ns.key(message_acks_key(str(data["id"]))))
        await self._store.run(batch)
        messages = [
            Message(
                **_header_fields(data, was_read, was_acked),
                body=str(data.get("body", "")),
                acked_by=sorted(str(a) for a in ack_sets[str(data["id"])].value)
                if str(data["id"]) in ack_sets
                else None,
            )
            for data, was_read, was_acked in visible
        ]
        return ThreadResult(thread_id=thread_id, messages=messages, truncated=truncated)
