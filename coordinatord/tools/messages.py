"""Message tools: agents of one project write to each other (see services/messages.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field

from coordinatord.context import CallContext
from coordinatord.services.messages import (
    AckResult,
    Importance,
    InboxResult,
    ReadResult,
    SendResult,
    ThreadResult,
)
from coordinatord.tools.registry import Integer, ToolArgs, ToolReply, ToolSpec

GROUP = "messages"
LOG_KEY_CHARS = 200

_SENDER = "messages are always sent as this connection's agent (its --agent name); no argument names a sender"


class MessageSendArgs(ToolArgs):
    # An agent must not send as another: a sender argument gets a refusal that says why.
    refused: ClassVar[Mapping[str, str]] = {"from": _SENDER, "sender": _SENDER, "agent": _SENDER}
    content: ClassVar[frozenset[str]] = frozenset({"subject", "body"})  # MessageService.send scans them

    to: str | list[str] = Field(description='Agent name(s), or "*" for all')
    subject: str = Field(description="One line")
    body: str = Field(description="")
    thread_id: str | None = Field(None, description="Reply in this thread")
    importance: Importance = Field("normal", description="")
    ack_required: bool = Field(False, description="Ask for message_ack")


class MessageInboxArgs(ToolArgs):
    unread_only: bool = Field(True, description="")
    since: str | None = Field(None, description="next_since of a previous call")
    limit: Integer = Field(50, description="", ge=1)


class MessageIdsArgs(ToolArgs):
    ids: list[str] = Field(description="From message_inbox")


class MessageThreadArgs(ToolArgs):
    thread_id: str = Field(description="")


def _bounded(text: str) -> str:
    return text if len(text) <= LOG_KEY_CHARS else text[: LOG_KEY_CHARS - 1] + "…"


async def message_send(call: CallContext, args: MessageSendArgs) -> ToolReply:
    to = args.to if isinstance(args.to, str) else ",".join(args.to)
    # The activity log (and `tail`) shows who it went to and the subject, never the body.
    call.log_key = _bounded(f"{to}: {args.subject}")
    result = await call.services.messages.send(
        call.namespace,
        call.agent,
        args.to,
        args.subject,
        args.body,
        thread_id=args.thread_id,
        importance=args.importance,
        ack_required=args.ack_required,
    )
    return ToolReply.data(result)


async def message_inbox(call: CallContext, args: MessageInboxArgs) -> ToolReply:
    result = await call.services.messages.inbox(
        call.namespace, call.agent, unread_only=args.unread_only, since=args.since, limit=args.limit
    )
    return ToolReply.data(result)


async def message_read(call: CallContext, args: MessageIdsArgs) -> ToolReply:
    call.log_key = _bounded(",".join(args.ids))
    return ToolReply.data(await call.services.messages.read(call.namespace, call.agent, args.ids))


async def message_ack(call: CallContext, args: MessageIdsArgs) -> ToolReply:
    call.log_key = _bounded(",".join(args.ids))
    return ToolReply.data(await call.services.messages.ack(call.namespace, call.agent, args.ids))


async def message_thread(call: CallContext, args: MessageThreadArgs) -> ToolReply:
    call.log_key = args.thread_id
    return ToolReply.data(await call.services.messages.thread(call.namespace, call.agent, args.thread_id))


TOOLS: tuple[ToolSpec[Any], ...] = (
    ToolSpec(
        "message_send",
        GROUP,
        "Message other agents here (delivered even if they are offline).",
        MessageSendArgs,
        message_send,
        output=SendResult,
    ),
    ToolSpec(
        "message_inbox",
        GROUP,
        "Headers of messages to you, oldest first (changes nothing).",
        MessageInboxArgs,
        message_inbox,
        read_only=True,
        idempotent=True,
        output=InboxResult,
    ),
    ToolSpec(
        "message_read",
        GROUP,
        "Read inbox messages by id, with bodies, and mark them read.",
        MessageIdsArgs,
        message_read,
        idempotent=True,
        output=ReadResult,
    ),
    ToolSpec(
        "message_ack",
        GROUP,
        "Acknowledge inbox messages by id; senders see who did.",
        MessageIdsArgs,
        message_ack,
        idempotent=True,
        output=AckResult,
    ),
    ToolSpec(
        "message_thread",
        GROUP,
        "A thread's messages you sent or received, with bodies.",
        MessageThreadArgs,
        message_thread,
        read_only=True,
        idempotent=True,
        output=ThreadResult,
    ),
)
