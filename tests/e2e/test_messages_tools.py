"""Message tools through real shims: eight agents exchanging a thousand messages, offline
delivery, broadcasts, the sender's identity, limits, the inbox resource and the activity log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from tests.e2e.conftest import call, connect, hints, text_of
from tests.support import DaemonProcess, running_daemon

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

AGENTS = [f"agent-{n}" for n in range(8)]
PER_AGENT = 125  # 8 x 125 = 1 000 messages
MAX_INBOX = 150  # small, so that the full-inbox test needs few sends


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    """One daemon (embedded Valkey) for the module, with a small inbox limit."""
    with running_daemon({"COORDINATORD_MESSAGES__MAX_INBOX": str(MAX_INBOX)}) as process:
        yield process


async def drain(client: Client) -> list[dict[str, Any]]:
    """Every unread message of the client's inbox, read (bodies) and so marked read."""
    got: list[dict[str, Any]] = []
    while True:
        page = await call(client, "message_inbox", {"limit": 100})
        if not page["messages"]:
            return got
        read = await call(client, "message_read", {"ids": [m["id"] for m in page["messages"]]})
        assert read["not_found"] == []
        got += read["messages"]


async def test_eight_agents_exchange_a_thousand_messages(daemon: DaemonProcess, workdir: Path) -> None:
    """8 agents send 125 messages each, round robin to the 7 others, one thread per pair, and
    read while others still send: every message arrives exactly once, threads keep their order."""
    received: dict[str, list[dict[str, Any]]] = {agent: [] for agent in AGENTS}
    sent_ids: list[str] = []

    async def agent(index: int, client: Client) -> None:
        me = AGENTS[index]
        for k in range(PER_AGENT):
            to = AGENTS[(index + 1 + k % 7) % 8]
            sent = await call(
                client,
                "message_send",
                {"to": to, "subject": f"{me}#{k}", "body": json.dumps({"k": k}), "thread_id": f"t-{me}-{to}"},
            )
            sent_ids.append(sent["id"])
            if k == PER_AGENT // 2:
                received[me] += await drain(client)  # reads race with the others' sends
        received[me] += await drain(client)

    clients: dict[int, Client] = {}
    connected, finished = anyio.Event(), anyio.Event()

    async def session(index: int) -> None:
        async with connect(daemon.socket_path, agent=AGENTS[index], project=workdir) as client:
            clients[index] = client
            if len(clients) == len(AGENTS):
                connected.set()
            await finished.wait()

    async with anyio.create_task_group() as connections:
        for index in range(8):
            connections.start_soon(session, index)
        with anyio.fail_after(60):
            await connected.wait()
        async with anyio.create_task_group() as agents:
            for index, client in clients.items():
                agents.start_soon(agent, index, client)
        # Every sender is done: a last drain finds what arrived after each agent's own.
        for index, client in clients.items():
            received[AGENTS[index]] += await drain(client)
        thread = await call(clients[1], "message_thread", {"thread_id": "t-agent-0-agent-1"})
        finished.set()

    assert len(sent_ids) == 8 * PER_AGENT and len(set(sent_ids)) == len(sent_ids)
    everything = [m for messages in received.values() for m in messages]
    assert sorted(m["id"] for m in everything) == sorted(sent_ids)  # none lost, none twice
    for me, messages in received.items():
        assert all(m["to"] == [me] for m in messages)
        ids = [m["id"] for m in messages]
        assert ids == sorted(ids, key=int)  # an inbox is read in id order
        by_thread: dict[str, list[int]] = {}
        for m in messages:
            assert m["thread_id"] == f"t-{m['sender']}-{me}" and m["subject"].startswith(m["sender"])
            by_thread.setdefault(m["thread_id"], []).append(json.loads(m["body"])["k"])
        assert all(ks == sorted(ks) for ks in by_thread.values())
    expected = [k for k in range(PER_AGENT) if (1 + k % 7) % 8 == 1]
    assert [json.loads(m["body"])["k"] for m in thread["messages"]] == expected


async def test_an_offline_agent_gets_its_mail_on_its_next_connection(
    daemon: DaemonProcess, workdir: Path
) -> None:
    """Mail to an agent that left (and to one never seen) waits; each reads it when it connects."""
    async with connect(daemon.socket_path, agent="bob", project=workdir) as bob:
        assert (await call(bob, "message_inbox"))["messages"] == []
    async with connect(daemon.socket_path, agent="alice", project=workdir) as alice:
        sent = await call(
            alice, "message_send", {"to": ["bob", "zoe"], "subject": "while you were out", "body": "b"}
        )
        # zoe never connected; bob did (whether he still counts as seen depends on his presence
        # record's expiry, so only zoe is asserted).
        assert "zoe" in sent["not_seen"]
    for name in ("bob", "zoe"):
        async with connect(daemon.socket_path, agent=name, project=workdir) as client:
            [message] = (await call(client, "message_read", {"ids": [sent["id"]]}))["messages"]
            assert (message["sender"], message["body"]) == ("alice", "b")


async def test_an_agent_cannot_send_as_another(daemon: DaemonProcess, workdir: Path) -> None:
    """A from/sender argument is refused with the reason; the recorded sender is the connection's agent."""
    async with (
        connect(daemon.socket_path, agent="mallory", project=workdir) as mallory,
        connect(daemon.socket_path, agent="bob", project=workdir) as bob,
    ):
        for name in ("from", "sender"):
            forged = await mallory.call_tool(
                "message_send", {"to": "bob", "subject": "hi", "body": "", name: "alice"}
            )
            assert forged.is_error
            assert text_of(forged).startswith(f"message_send: argument {name!r} is refused by message_send: ")
            assert "always sent as this connection's agent" in text_of(forged)
        await call(mallory, "message_send", {"to": "bob", "subject": "hi", "body": ""})
        [header] = (await call(bob, "message_inbox"))["messages"]
        assert header["sender"] == "mallory"


async def test_a_broadcast_reaches_every_agent(daemon: DaemonProcess, workdir: Path) -> None:
    """A "*" message is in every other agent's inbox, including one that connects afterwards."""
    async with connect(daemon.socket_path, agent="lead", project=workdir) as lead:
        sent = await call(
            lead, "message_send", {"to": "*", "subject": "freeze", "body": "no merges", "importance": "high"}
        )
        assert sent["to"] == ["*"]
        assert (await call(lead, "message_inbox"))["messages"] == []
    for name in AGENTS:
        async with connect(daemon.socket_path, agent=name, project=workdir) as client:
            [header] = (await call(client, "message_inbox"))["messages"]
            assert (header["id"], header["importance"], header["to"]) == (sent["id"], "high", ["*"])
            assert (await call(client, "message_ack", {"ids": [sent["id"]]}))["acked"] == [sent["id"]]
            assert (await call(client, "message_inbox"))["messages"] == []


async def test_limits_refuse_clearly(daemon: DaemonProcess, workdir: Path) -> None:
    """Oversized parts, bad recipients and a full inbox are tool errors naming the argument or setting."""
    async with connect(daemon.socket_path, agent="a", project=workdir) as client:
        checks: list[tuple[dict[str, Any], str]] = [
            (
                {"to": "b", "subject": "s", "body": "x" * 16_385},
                "'body' is 16385 bytes; the limit is messages.max_body_bytes",
            ),
            ({"to": "b", "subject": "s" * 201, "body": ""}, "messages.max_subject_bytes = 200"),
            (
                {"to": [f"b{n}" for n in range(17)], "subject": "s", "body": ""},
                "messages.max_recipients = 16",
            ),
            ({"to": ["*", "b"], "subject": "s", "body": ""}, "cannot be combined"),
            (
                {"to": ["b", 3], "subject": "s", "body": ""},
                "argument 'to' must be a string or an array of strings",
            ),
            ({"to": "b", "subject": "s", "body": "", "importance": "urgent"}, "'importance' must be one of"),
        ]
        for arguments, expected in checks:
            result = await client.call_tool("message_send", arguments)
            assert result.is_error and expected in text_of(result), text_of(result)
        for n in range(MAX_INBOX):
            await call(client, "message_send", {"to": "full", "subject": f"{n}", "body": ""})
        full = await client.call_tool("message_send", {"to": "full", "subject": "one more", "body": ""})
        assert full.is_error
        assert (
            f"argument 'to': the inbox of 'full' is full: {MAX_INBOX} messages (messages.max_inbox)"
            in text_of(full)
        )
        bad = await client.call_tool("message_read", {"ids": ["1", "../x"]})
        assert bad.is_error and "argument 'ids[1]' must be a message id" in text_of(bad)


async def test_the_inbox_is_a_resource_of_its_agent_only(daemon: DaemonProcess, workdir: Path) -> None:
    """resources/list names inbox://<agent>; reading it lists the inbox; another agent's is refused."""
    async with connect(daemon.socket_path, agent="bob", project=workdir) as bob:
        await call(bob, "message_send", {"to": "bob", "subject": "note to self", "body": "secret"})
        uris = [r.uri for r in (await bob.list_resources()).resources]
        assert "inbox://bob" in [str(uri) for uri in uris]
        (content,) = (await bob.read_resource("inbox://bob")).contents
        page = json.loads(getattr(content, "text", ""))
        assert [m["subject"] for m in page["messages"]] == ["note to self"]
        assert "secret" not in getattr(content, "text", "")
        with pytest.raises(MCPError, match="can read only its own, inbox://bob"):
            await bob.read_resource("inbox://alice")


async def test_activity_shows_the_subject_never_the_body(daemon: DaemonProcess, workdir: Path) -> None:
    """A send's activity event carries the recipients and subject; the body appears nowhere."""
    async with connect(daemon.socket_path, agent="alice", project=workdir) as alice:
        await call(alice, "message_send", {"to": "bob", "subject": "deploy at 5", "body": "the-body-text"})
        events = (await call(alice, "activity_recent", {"limit": 10}))["events"]
    [send] = [e for e in events if e["name"] == "message_send"]
    assert send["key"] == "bob: deploy at 5" and send["outcome"] == "ok"
    assert "the-body-text" not in json.dumps(events)


async def test_message_tools_describe_themselves_truthfully(daemon: DaemonProcess, workdir: Path) -> None:
    """inbox and thread are read-only; none is destructive; each has an output schema and a
    description of one short line."""
    async with connect(daemon.socket_path, project=workdir) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools if t.name.startswith("message_")}
    assert set(tools) == {"message_send", "message_inbox", "message_read", "message_ack", "message_thread"}
    for name, tool in tools.items():
        assert hints(tool) is not None and tool.output_schema is not None
        assert hints(tool).read_only_hint is (name in ("message_inbox", "message_thread"))
        assert hints(tool).destructive_hint is False
        assert tool.description is not None and len(tool.description) < 160
