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

    to: str | list[str] = Field(description='An agent name, a list of names, or "*" for every agent')
    subject: str = Field(description="One line")
    body: str = Field(description="The message")
    thread_id: str | None = Field(
        None, description="Reply in this thread (an id from a message); default: a new one"
    )
    importance: Importance = Field("normal", description="low, normal or high")
    ack_required: bool = Field(False, description="Ask recipients to message_ack it")


class MessageInboxArgs(ToolArgs):
    unread_only: bool = Field(True, description="Only messages you have not read")
    since: str | None = Field(None, description="Only messages after this id (next_since of a previous call)")
    limit: Integer = Field(50, description="Most messages listed (at most messages.max_page)", ge=1)


class MessageIdsArgs(ToolArgs):
    ids: list[str] = Field(description="Message ids from message_inbox")


class MessageThreadArgs(ToolArgs):
    thread_id: str = Field(description="A message's thread_id")


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
        "Send a message to other agents of this project (delivered even if they are offline); "
        "you are always the sender.",
        MessageSendArgs,
        message_send,
        output=SendResult,
    ),
    ToolSpec(
        "message_inbox",
        GROUP,
        "List messages sent to you or to every agent, oldest first (headers only; changes nothing).",
        MessageInboxArgs,
        message_inbox,
        read_only=True,
        idempotent=True,
        output=InboxResult,
    ),
    ToolSpec(
        "message_read",
        GROUP,
        "Read messages of your inbox by id (with bodies) and mark them read.",
        MessageIdsArgs,
        message_read,
        idempotent=True,
        output=ReadResult,
    ),
    ToolSpec(
        "message_ack",
        GROUP,
        "Acknowledge messages of your inbox by id (marks them read); senders see who acknowledged.",
        MessageIdsArgs,
        message_ack,
        idempotent=True,
        output=AckResult,
    ),
    ToolSpec(
        "message_thread",
        GROUP,
        "Show a thread's messages you sent or received, in order, with bodies.",
        MessageThreadArgs,
        message_thread,
        read_only=True,
        idempotent=True,
        output=ThreadResult,
    ),
)
