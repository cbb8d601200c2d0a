"""Agent messages against every backend: delivery, broadcasts, read state, threads, limits."""

from __future__ import annotations

import json

import anyio
import pytest

from coordinatord.errors import InvalidArgumentError, LimitExceededError
from coordinatord.keyspace import (
    BROADCASTS_INDEX,
    MESSAGE_COUNTER,
    Namespace,
    inbox_key,
    message_key,
    message_read_key,
    message_thread_key,
)
from coordinatord.services.messages import MessageService
from coordinatord.settings import MessageSettings
from coordinatord.store import Store
from tests.support import fresh_namespace

pytestmark = pytest.mark.anyio

SETTINGS = MessageSettings()


def make_service(store: Store, **overrides: int) -> MessageService:
    return MessageService(store, MessageSettings(**overrides))


async def inbox_ids(
    messages: MessageService, ns: Namespace, agent: str, unread_only: bool = True
) -> list[str]:
    page = await messages.inbox(ns, agent, unread_only=unread_only, limit=200)
    return [m.id for m in page.messages]


async def test_a_message_waits_for_its_recipient_and_is_read_once(store: Store) -> None:
    """Sent to an agent nobody has seen: stored, listed (headers only), read with its body, then read."""
    messages, ns = make_service(store), fresh_namespace()
    sent = await messages.send(
        ns, "alice", "bob", "schema change", "users.email is unique now", ack_required=True
    )
    assert sent.to == ["bob"] and sent.not_seen == ["bob"] and sent.dropped == 0
    assert sent.thread_id == sent.id and sent.id.isdigit()
    page = await messages.inbox(ns, "bob")
    [header] = page.messages
    assert (header.id, header.sender, header.subject, header.read, header.acked) == (
        sent.id,
        "alice",
        "schema change",
        False,
        False,
    )
    assert header.ack_required and header.to == ["bob"] and not page.more and page.next_since == sent.id
    assert "body" not in header.model_dump()
    assert await inbox_ids(messages, ns, "alice") == []  # the sender's own inbox is untouched
    read = await messages.read(ns, "bob", [sent.id])
    assert [m.body for m in read.messages] == ["users.email is unique now"] and read.not_found == []
    assert await inbox_ids(messages, ns, "bob") == []
    assert await inbox_ids(messages, ns, "bob", unread_only=False) == [sent.id]
    # The document is what the raw tools show, under msg:{id}, with the TTL of the policy.
    doc = json.loads(await store.get(ns.key(message_key(sent.id))) or "{}")
    assert doc["sender"] == "alice" and doc["body"] == "users.email is unique now"
    assert 0 < await store.ttl(ns.key(message_key(sent.id))) <= SETTINGS.ttl_s
    for key in (inbox_key("bob"), message_read_key("bob"), message_thread_key(sent.id), MESSAGE_COUNTER):
        assert await store.ttl(ns.key(key)) > 0, key


async def test_only_the_recipient_can_read_or_ack(store: Store) -> None:
    """Another agent's ids are not found for a third agent, and marking them changes nothing."""
    messages, ns = make_service(store), fresh_namespace()
    sent = await messages.send(ns, "alice", ["bob"], "private", "for bob")
    nosy = await messages.read(ns, "carol", [sent.id])
    assert nosy.messages == [] and nosy.not_found == [sent.id]
    assert (await messages.ack(ns, "alice", [sent.id])).not_found == [sent.id]
    assert await inbox_ids(messages, ns, "bob") == [sent.id]


async def test_a_broadcast_reaches_every_agent_but_its_sender_even_later_ones(store: Store) -> None:
    """One stored copy, seen by agents registered or not; read state is per agent."""
    messages, ns = make_service(store), fresh_namespace()
    sent = await messages.send(ns, "lead", "*", "freeze", "main is frozen until 18:00")
    assert sent.to == ["*"] and sent.not_seen == []
    for agent in ("a1", "a2", "newcomer"):
        assert await inbox_ids(messages, ns, agent) == [sent.id]
    assert await inbox_ids(messages, ns, "lead", unread_only=False) == []
    assert (await messages.read(ns, "lead", [sent.id])).not_found == [sent.id]
    await messages.ack(ns, "a1", [sent.id])
    assert await inbox_ids(messages, ns, "a1") == []
    assert await inbox_ids(messages, ns, "a2") == [sent.id]
    assert await store.zcard(ns.key(BROADCASTS_INDEX)) == 1


async def test_the_oldest_broadcast_makes_room(store: Store) -> None:
    """Beyond messages.max_broadcasts the oldest broadcast is dropped, and the send says so."""
    messages, ns = make_service(store, max_broadcasts=3), fresh_namespace()
    ids = [(await messages.send(ns, "lead", "*", f"n{i}", "")).id for i in range(3)]
    fourth = await messages.send(ns, "lead", "*", "n3", "")
    assert fourth.dropped == 1
    assert await inbox_ids(messages, ns, "a") == [*ids[1:], fourth.id]


async def test_a_full_inbox_drops_read_mail_and_refuses_when_all_is_unread(store: Store) -> None:
    """max_inbox=3: a fourth send to unread mail is refused naming the recipient; read mail makes room,
    mail awaiting an ack does not until acked; a refused multi-recipient send delivers nothing."""
    messages, ns = make_service(store, max_inbox=3), fresh_namespace()
    first = await messages.send(ns, "a", "bob", "1", "", ack_required=True)
    second = await messages.send(ns, "a", "bob", "2", "")
    third = await messages.send(ns, "a", "bob", "3", "")
    with pytest.raises(LimitExceededError, match=r"argument 'to': the inbox of 'bob' is full: 3 messages"):
        await messages.send(ns, "a", ["carol", "bob"], "4", "")
    assert await inbox_ids(messages, ns, "carol") == []  # all or nothing
    await messages.read(ns, "bob", [first.id])  # read, but its ack is still awaited: kept
    with pytest.raises(LimitExceededError):
        await messages.send(ns, "a", "bob", "4", "")
    await messages.read(ns, "bob", [third.id])
    fourth = await messages.send(ns, "a", "bob", "4", "")
    assert fourth.dropped == 1
    assert await inbox_ids(messages, ns, "bob", unread_only=False) == [first.id, second.id, fourth.id]
    await messages.ack(ns, "bob", [first.id])
    fifth = await messages.send(ns, "a", "bob", "5", "")
    assert await inbox_ids(messages, ns, "bob", unread_only=False) == [second.id, fourth.id, fifth.id]


async def test_threads_keep_their_order_and_acks_reach_the_sender(store: Store) -> None:
    """Replies in a thread come back in send order; the sender sees who acknowledged; others see
    only the thread's messages they sent or received."""
    messages, ns = make_service(store), fresh_namespace()
    question = await messages.send(
        ns, "alice", ["bob", "carol"], "which port?", "8080 or 9090", ack_required=True
    )
    thread = question.thread_id
    answer = await messages.send(ns, "bob", "alice", "re: which port?", "9090", thread_id=thread)
    aside = await messages.send(ns, "carol", "dave", "re: which port?", "ask bob", thread_id=thread)
    await messages.ack(ns, "bob", [question.id])
    seen = await messages.thread(ns, "alice", thread)
    assert [m.id for m in seen.messages] == [question.id, answer.id]
    assert seen.messages[0].acked_by == ["bob"] and seen.messages[1].acked_by is None
    assert [m.id for m in (await messages.thread(ns, "carol", thread)).messages] == [question.id, aside.id]
    assert (await messages.thread(ns, "eve", thread)).messages == []


async def test_inbox_pages_with_since_and_limit(store: Store) -> None:
    """limit and since page through the inbox in id order, direct mail and broadcasts merged."""
    messages, ns = make_service(store), fresh_namespace()
    ids = []
    for i in range(5):
        to = "*" if i % 2 else "bob"
        ids.append((await messages.send(ns, "alice", to, f"m{i}", "")).id)
    assert ids == sorted(ids, key=int)
    first = await messages.inbox(ns, "bob", limit=2)
    assert [m.id for m in first.messages] == ids[:2] and first.more
    rest = await messages.inbox(ns, "bob", since=first.next_since, limit=10)
    assert [m.id for m in rest.messages] == ids[2:] and not rest.more


async def test_concurrent_senders_get_unique_rising_ids(store: Store) -> None:
    """8 senders x 25 messages at once: 200 distinct ids, each sender's in its send order."""
    messages, ns = make_service(store), fresh_namespace()
    by_sender: dict[str, list[str]] = {}

    async def sender(name: str) -> None:
        for i in range(25):
            sent = await messages.send(ns, name, "sink", f"{name}-{i}", "", thread_id=f"t-{name}")
            by_sender.setdefault(name, []).append(sent.id)

    async with anyio.create_task_group() as tg:
        for n in range(8):
            tg.start_soon(sender, f"s{n}")
    all_ids = [i for ids in by_sender.values() for i in ids]
    assert len(set(all_ids)) == 200
    assert all(ids == sorted(ids, key=int) for ids in by_sender.values())
    page = await messages.inbox(ns, "sink", limit=200)
    assert [m.id for m in page.messages] == sorted(all_ids, key=int)
    thread = await messages.thread(ns, "sink", "t-s3")
    assert [m.subject for m in thread.messages] == [f"s3-{i}" for i in range(25)]


async def test_bad_arguments_are_refused_naming_them(store: Store) -> None:
    """Sizes, recipients, ids and thread ids are checked before anything is written."""
    messages, ns = (
        make_service(store, max_recipients=2, max_subject_bytes=10, max_body_bytes=20),
        fresh_namespace(),
    )
    refusals = [
        (messages.send(ns, "a", [], "s", ""), InvalidArgumentError, "argument 'to' must name at least one"),
        (messages.send(ns, "a", ["*", "b"], "s", ""), InvalidArgumentError, "cannot be combined"),
        (messages.send(ns, "a", ["b", "c", "d"], "s", ""), LimitExceededError, "messages.max_recipients = 2"),
        (messages.send(ns, "a", ["b", "x\ny"], "s", ""), InvalidArgumentError, "argument 'to[1]'"),
        (messages.send(ns, "a", "b", "s" * 11, ""), LimitExceededError, "messages.max_subject_bytes = 10"),
        (messages.send(ns, "a", "b", " ", ""), InvalidArgumentError, "argument 'subject' must not be empty"),
        (messages.send(ns, "a", "b", "s", "é" * 11), LimitExceededError, "'body' is 22 bytes"),
        (messages.send(ns, "a", "b", "s", "", thread_id="a/b"), InvalidArgumentError, "argument 'thread_id'"),
        (messages.read(ns, "a", ["12", "x"]), InvalidArgumentError, "argument 'ids[1]' must be a message id"),
        (messages.ack(ns, "a", []), InvalidArgumentError, "argument 'ids' must list"),
        (messages.inbox(ns, "a", since="-1"), InvalidArgumentError, "argument 'since'"),
        (messages.inbox(ns, "a", limit=201), LimitExceededError, "messages.max_page = 200"),
    ]
    for call, error, text in refusals:
        with pytest.raises(error, match=text.replace("[", r"\[").replace("]", r"\]")):
            await call
    assert await store.get(ns.key(MESSAGE_COUNTER)) is None
