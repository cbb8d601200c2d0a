"""Hostile input at the front door: a barrage of thousands of bad lines, on a raw socket (both
protocol eras) and through a real shim, harms nobody.

Every request line whose id can be read gets exactly one reply, under that id; a call started
before the barrage on the same connection completes; the connection, the shim, a bystander and
the daemon's memory all come through. Hostile first lines are answered and the connection is
served as a plain client; refusals say so in ``error.data``.

The corpus is built once per run: hand-made lines for each known way to break a parser, and
lines drawn by hypothesis (derandomized, so every run sends the same bytes).
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from mcp_types import CLIENT_CAPABILITIES_META_KEY, CLIENT_INFO_META_KEY, PROTOCOL_VERSION_META_KEY

from coordinatord import paths
from coordinatord.preamble import Preamble
from tests.e2e.conftest import INITIALIZE, INITIALIZED, RawConnection, frames
from tests.support import COORDINATORD, DaemonProcess, running_daemon

pytestmark = pytest.mark.e2e

RequestId = str | int
MAX_LINE = 4 * 1024 * 1024  # the default server.max_line_bytes, which the daemon here runs with
WAIT = 30.0  # the bound on every wait for a reply
RSS_GROWTH_LIMIT_KB = 32 * 1024
OWN_IDS = {
    "acquire",
    "probe-0",
    "probe-1",
    "probe-init",
    "probe-open",
}  # the test's own calls around the barrage
MODERN_ENVELOPE = {
    PROTOCOL_VERSION_META_KEY: "2026-07-28",
    CLIENT_INFO_META_KEY: {"name": "fuzzer", "version": "0"},
    CLIENT_CAPABILITIES_META_KEY: {},
}


@dataclass(frozen=True)
class Hostile:
    """One line to send (without its newline) and the id its one reply must carry; ``None``
    when no reply may carry an id of ours (a notification, a response, an unreadable id)."""

    line: bytes
    reply_id: RequestId | None


# --- the corpus ------------------------------------------------------------------------------


class Ids:
    """Fresh request ids, strings and integers in turn, that nothing else on a connection uses."""

    def __init__(self, tag: str) -> None:
        self._tag = tag
        self._next = itertools.count()

    def __call__(self) -> RequestId:
        n = next(self._next)
        return f"{self._tag}-{n}" if n % 2 == 0 else 7_000_000_000 + n


def nested(depth: int, inner: str = "") -> str:
    return "[" * depth + inner + "]" * depth


def request_line(request_id: RequestId, method: str, rest: str) -> bytes:
    """A request with its id up front; ``rest`` is everything after the method member."""
    return f'{{"jsonrpc":"2.0","id":{json.dumps(request_id)},"method":"{method}"{rest}'.encode()


def handmade(new_id: Ids) -> list[Hostile]:
    """A few lines for each known way to break a JSON-RPC parser."""
    corpus: list[Hostile] = []

    def answered(method: str, rest: str | bytes) -> None:
        request_id = new_id()
        tail = rest if isinstance(rest, bytes) else rest.encode()
        corpus.append(Hostile(request_line(request_id, method, "") + tail, request_id))

    def unanswered(line: str | bytes) -> None:
        corpus.append(Hostile(line if isinstance(line, bytes) else line.encode(), None))

    for depth in (202, 1_000, 10_000, 100_000):
        deep_array, deep_object = nested(depth), '{"a":' * depth + "1" + "}" * depth
        answered("tools/call", f',"params":{{"name":"redis_get","arguments":{{"key":{deep_array}}}}}}}')
        answered("tools/call", f',"params":{{"name":"redis_get","arguments":{deep_object}}}}}')
        answered("ping", f',"params":{{"a":{deep_array}}}}}')
        answered("ping", f',"params":{deep_object}}}')
        unanswered(f'{{"jsonrpc":"2.0","id":{deep_array},"method":"ping"}}')
        unanswered(deep_array)
        unanswered("[" * depth)
        unanswered(f'{{"jsonrpc":"2.0","method":"notifications/x","params":{{"a":{deep_array}}}}}')
        request_id = new_id()  # the id last, behind the part too deep to parse
        line = f'{{"jsonrpc":"2.0","method":"tools/call","params":{{"a":{deep_array}}}'
        line += f',"id":{json.dumps(request_id)}}}'
        corpus.append(Hostile(line.encode(), request_id))
    for bad in (b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\x00"):
        answered("tools/call", b',"params":{"name":"redis_get","arguments":{"key":"k' + bad + b'"}}}')
        answered("ping", b',"params":{"' + bad + b'":1}}')
        unanswered(bad + b' {"jsonrpc":"2.0","id":1,"method":"ping"}')
    unanswered(b"\xef\xbb\xbf" + request_line(1, "ping", "}"))  # a BOM hides the id from the reader
    for escape in ("\\ud800", "\\udfff", "\\udc00\\ud800"):
        answered("ping", f',"params":{{"a":"{escape}"}}}}')
        answered("tools/call", f',"params":{{"name":"{escape}","arguments":{{}}}}}}')
    for request_id in ("\ud800-a", "\udfff-b"):
        corpus.append(Hostile(request_line(request_id, "ping", "}"), request_id))
    # Huge ids: too many digits to read; a 4 000-digit one is still an id; a 1 MB string id.
    unanswered('{"jsonrpc":"2.0","id":' + "7" * 5_000 + ',"method":"ping"}')
    unanswered(
        '{"jsonrpc":"2.0","id":' + "7" * 5_000 + ',"method":"tools/call","params":{"name":"redis_ping"}}'
    )
    for request_id in (int("8" * 4_000), -(2**80), 0, "", "x" * 1_000_000, "y" * 1_000_000):
        method, rest = ("tools/call", ',"params":{"name":"redis_ping","arguments":{}}}')
        if isinstance(request_id, str) and request_id.startswith("y"):
            method, rest = "ping", "}"
        corpus.append(Hostile(request_line(request_id, method, rest), request_id))
    answered("ping", ',"params":{"n":' + "9" * 5_000 + "}}")
    # Ids that are no ids: answered under null, or taken for a notification.
    for request_id in ("1.5", "true", "false", "null", "{}", "[1]", "1e3", "-0.0"):
        unanswered(
            f'{{"jsonrpc":"2.0","id":{request_id},"method":"tools/call","params":{{"name":"redis_ping"}}}}'
        )
    # Truncated JSON, id readable.
    rest = ',"params":{"name":"redis_get","arguments":{"key":"abc","ttl":5}}}'
    for cut in range(len(rest)):
        answered("tools/call", rest[:cut])
    for junk in (
        "",
        " ",
        "{",
        "}",
        "[",
        "]",
        '"',
        "{{",
        "nul",
        "tru",
        '{"',
        '{"id"',
        '{"id":',
        "1 2",
        "{}{}",
        ",",
    ):
        unanswered(junk)
    # Batches, empty and odd objects, responses (never answered), wrong jsonrpc.
    unanswered("[]")
    unanswered(
        "[" + request_line(1, "ping", "}").decode() + "," + request_line(2, "ping", "}").decode() + "]"
    )
    unanswered("{}")
    unanswered('{"jsonrpc":"2.0"}')
    unanswered('{"method":"notifications/x"}')
    for body in ('"result":{}', '"result":5', '"error":{"code":1,"message":"x"}', '"error":"x"'):
        unanswered(f'{{"jsonrpc":"2.0","id":{json.dumps(new_id())},{body}}}')  # a response to no request
    unanswered('{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}')
    for body in ('"no":"method"}', '"method":5}', '"method":null}', '"method":"ping","params":[1]}'):
        request_id = new_id()
        corpus.append(Hostile(f'{{"jsonrpc":"2.0","id":{json.dumps(request_id)},{body}'.encode(), request_id))
    for version in ('"1.0"', "2", "null", '"2.0 "'):
        request_id = new_id()
        line = f'{{"jsonrpc":{version},"id":{json.dumps(request_id)},"method":"ping"}}'
        corpus.append(Hostile(line.encode(), request_id))
    # Over-long lines: the id first, the id last, no id.
    filler = "x" * (MAX_LINE + 1024)
    answered("tools/call", f',"params":{{"name":"redis_set","arguments":{{"key":"k","value":"{filler}"}}}}}}')
    request_id = new_id()
    last = (
        f'{{"jsonrpc":"2.0","method":"tools/call","params":{{"v":"{filler}"}},"id":{json.dumps(request_id)}}}'
    )
    corpus.append(Hostile(last.encode(), request_id))
    unanswered("[" * (MAX_LINE + 10))
    # Envelopes of the 2026-07-28 era, whole and broken, on whatever era the connection is in.
    for meta in (
        MODERN_ENVELOPE,
        {PROTOCOL_VERSION_META_KEY: 5},
        {PROTOCOL_VERSION_META_KEY: "1999-01-01"},
        [1],
        "x",
    ):
        call_with_meta = {"name": "redis_ping", "arguments": {}, "_meta": meta}
        answered("tools/call", f',"params":{json.dumps(call_with_meta)}}}')
        answered("tools/list", f',"params":{json.dumps({"_meta": meta})}}}')
    # The handshake again, with wrong types.
    for hello in ({"protocolVersion": 5, "capabilities": [], "clientInfo": "x"}, [1], {}, None):
        answered("initialize", f',"params":{json.dumps(hello)}}}')
    return corpus


TOOLS = ["redis_ping", "redis_get", "redis_set", "lock_list", "no_such_tool", "", "resources/read"]
METHODS = ["tools/call"] * 5 + [
    "ping",
    "tools/list",
    "initialize",
    "resources/read",
    "resources/list",
    "prompts/get",
    "logging/setLevel",
    "completion/complete",
    "no/such/method",
    "notifications/cancelled",
    "server/discover",
]
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["\U0001f600", "memory-bank://brief.md", "k", ""]),
)
values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
arguments = st.dictionaries(
    st.sampled_from(["key", "value", "ttl", "pattern", "x", "_meta"]), values, max_size=4
)
call_params = st.fixed_dictionaries(
    {"name": st.sampled_from(TOOLS) | leaves, "arguments": arguments | values},
    optional={"_meta": values, "task": values},
)
# Weighted towards messages that get past the framing, so tools and the SDK see wrong types too.
params = st.one_of(*[call_params] * 4, st.dictionaries(st.text(max_size=6), values, max_size=4), values)
members = st.fixed_dictionaries(
    {
        "jsonrpc": st.sampled_from(["2.0"] * 12 + ["1.0", 2, None]),
        "method": st.one_of(*[st.sampled_from(METHODS)] * 9, leaves),
        "params": params,
    }
)
GENERATED = 1_850
BREAKS = ["none"] * 4 + ["truncate", "byte", "deepen", "invalid utf-8", "lone surrogate", "blank"]


@functools.cache
def drawn(count: int) -> list[tuple[dict[str, Any], str, int, int]]:
    """``count`` draws of (members, how to break the line, where, what), the same every run
    (and made once: drawing is the slow part)."""
    out: list[tuple[dict[str, Any], str, int, int]] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(members, st.sampled_from(BREAKS), st.integers(0, 10**6), st.integers(0, 255))
    def collect(message: dict[str, Any], how: str, where: int, what: int) -> None:
        out.append((message, how, where, what))

    collect()
    return out


def generated(new_id: Ids, count: int, modern: bool) -> list[Hostile]:
    """Requests of wrong types everywhere, some broken after the method member (where the id
    stays readable); notifications that could cancel something aim at nobody."""
    corpus = []
    for message, how, where, what in drawn(GENERATED)[:count]:
        request_id = new_id()
        parameters = message["params"]
        if message["method"] == "notifications/cancelled" and isinstance(parameters, dict):
            parameters = {**parameters, "requestId": f"nobody-{where}"}
        if modern and isinstance(parameters, dict) and where % 2 == 0:
            parameters = {**parameters, "_meta": MODERN_ENVELOPE}
        head = {k: v for k, v in message.items() if k == "jsonrpc"} | {
            "id": request_id,
            "method": message["method"],
        }
        prefix = json.dumps(head)[:-1].encode()
        rest = ("," + json.dumps({"params": parameters})[1:]).encode()
        if how == "truncate":
            rest = rest[: where % len(rest)]
        elif how == "byte" and what != ord("\n"):
            at = where % (len(rest) + 1)
            rest = rest[:at] + bytes([what]) + rest[at:]
        elif how == "deepen":
            depth = (202, 1_000, 20_000)[where % 3]
            rest = b',"params":{"a":' + b"[" * depth + b"]" * depth + b"}}"
        elif how == "invalid utf-8":
            rest = rest[:-1] + b',"z":"\xff\xfe"}'
        elif how == "lone surrogate":
            rest = rest[:-1] + b',"z":"\\udead"}'
        corpus.append(Hostile(prefix + rest, request_id))
        if how == "blank":
            corpus.append(Hostile(b" \t ", None))
    return corpus


def hostile_corpus(tag: str, count: int = GENERATED, modern: bool = False) -> list[Hostile]:
    new_id = Ids(tag)
    return handmade(new_id) + generated(new_id, count, modern)


# --- reading replies while the barrage goes out ------------------------------------------------


class Replies:
    """Every line read from ``stream`` by a thread of its own, so a barrage can be written
    without both sides blocking on full buffers."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._changed = threading.Condition()
        self.by_id: dict[RequestId, list[dict[str, Any]]] = {}
        self.null_id = 0
        self.closed = False
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for line in self._stream:
                reply = json.loads(line)
                with self._changed:
                    if reply.get("id") is None:
                        self.null_id += 1
                    else:
                        self.by_id.setdefault(reply["id"], []).append(reply)
                    self._changed.notify_all()
        except (OSError, ValueError) as exc:
            self.failure = exc
        finally:
            with self._changed:
                self.closed = True
                self._changed.notify_all()

    def wait_for(self, ids: set[RequestId], timeout: float = WAIT) -> None:
        """Until every id in ``ids`` has a reply (or the stream ends, or ``timeout`` passes)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not ids <= self.by_id.keys() and not self.closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            missing = ids - self.by_id.keys()
        assert not missing, (
            f"{len(missing)} ids unanswered, e.g. {sorted(map(str, missing))[:5]}; {self.failure}"
        )

    def join(self) -> None:
        self._thread.join(timeout=WAIT)
        assert not self._thread.is_alive(), "the reply stream never ended"


def check_barrage(replies: Replies, corpus: list[Hostile]) -> None:
    """Exactly one reply for each readable id, none under an id of ours that had to stay
    silent, and no more null-id replies than lines without a readable id."""
    expected = Counter(item.reply_id for item in corpus if item.reply_id is not None)
    assert max(expected.values()) == 1, "the corpus reuses an id"
    replies.wait_for(set(expected))
    extra = {rid: len(got) for rid, got in replies.by_id.items() if len(got) != 1 and rid in expected}
    assert not extra, f"ids answered more than once: {list(extra.items())[:5]}"
    # Responses, notifications and lines whose id cannot be read must not be answered under
    # any id (a response's id is the client's own request's, in its own numbering).
    unexpected = [rid for rid in replies.by_id if rid not in expected and rid not in OWN_IDS]
    assert not unexpected, f"replies under ids no request had: {[str(rid)[:40] for rid in unexpected[:5]]}"
    assert replies.null_id <= sum(1 for item in corpus if item.reply_id is None)


def rss_kb(daemon: DaemonProcess) -> int:
    assert daemon.process is not None
    for line in Path(f"/proc/{daemon.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS line")


def call(
    request_id: RequestId, tool: str, arguments: dict[str, Any], meta: dict[str, Any] | None = None
) -> bytes:
    params: dict[str, Any] = {"name": tool, "arguments": arguments}
    if meta is not None:
        params["_meta"] = meta
    return frames({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params})


def structured(reply: dict[str, Any]) -> dict[str, Any]:
    result = reply["result"]
    assert not result.get("isError"), reply
    return dict(result["structuredContent"])


# --- the barrage -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    with running_daemon() as process:
        yield process


@pytest.fixture(scope="module")
def project() -> Iterator[Path]:
    root = Path(f"/tmp/cd-hostile-{uuid.uuid4().hex[:8]}")
    root.mkdir()
    (root / ".git").mkdir()
    try:
        yield root
    finally:
        (root / ".git").rmdir()
        root.rmdir()


@dataclass
class Held:
    """A lock another connection holds, and how to let it go."""

    resource: str
    release: Callable[[], None]


@pytest.fixture
def held_lock(daemon: DaemonProcess, project: Path) -> Iterator[Callable[[bool], Held]]:
    """Makes a holder connection (default project, or ``project`` when asked) take a fresh lock."""
    holders: list[RawConnection] = []

    def hold(in_project: bool) -> Held:
        holder = RawConnection(daemon.socket_path)
        holders.append(holder)
        if in_project:
            holder.send(Preamble("holder", paths.canonical_root(project), os.getpid()).encode())
        holder.initialize("holder")
        resource = f"hostile-{uuid.uuid4().hex}"
        holder.send(call(10, "lock_acquire", {"resource": resource, "ttl": 120}))
        token = structured(holder.reply_to(10))["token"]

        def release() -> None:
            holder.send(call(11, "lock_release", {"resource": resource, "token": token}))
            assert structured(holder.reply_to(11))["released"] is True

        return Held(resource, release)

    try:
        yield hold
    finally:
        for holder in holders:
            holder.close()


def barrage(
    send: Callable[[bytes], None],
    replies: Replies,
    corpus: list[Hostile],
    held: Held,
    meta: dict[str, Any] | None = None,
) -> None:
    """A waiting lock_acquire, then the corpus, then the lock let go: all answered."""
    send(call("acquire", "lock_acquire", {"resource": held.resource, "wait_ms": 25_000}, meta))
    send(frames({"jsonrpc": "2.0", "id": "probe-0", "method": "ping"}))
    replies.wait_for({"probe-0"})  # the acquire is waiting by now
    assert "acquire" not in replies.by_id
    send(b"".join(item.line + b"\n" for item in corpus))
    check_barrage(replies, corpus)
    assert "acquire" not in replies.by_id, "the lock was taken while another held it"
    held.release()
    replies.wait_for({"acquire"})
    assert structured(replies.by_id["acquire"][0])["acquired"] is True
    send(frames({"jsonrpc": "2.0", "id": "probe-1", "method": "ping"}))
    replies.wait_for({"probe-1"})  # and the connection still serves


def test_a_barrage_on_the_socket_harms_nobody(
    daemon: DaemonProcess, held_lock: Callable[[bool], Held]
) -> None:
    """A raw connection after the handshake: every id answered once, the earlier call done,
    the bystander served, and memory back where it was."""
    corpus = hostile_corpus("raw")
    assert sum(1 for item in corpus if item.line.strip()) >= 2_000
    bystander = RawConnection(daemon.socket_path)
    bystander.initialize("bystander")
    conn = RawConnection(daemon.socket_path)
    try:
        conn.initialize("fuzzer")
        rss_before = rss_kb(daemon)
        replies = Replies(conn.reader)
        barrage(conn.send, replies, corpus, held_lock(False))
        bystander.send(call(2, "redis_ping", {}))
        assert bystander.reply_to(2)["result"]["content"][0]["text"] == "PONG"
        grown = rss_kb(daemon) - rss_before
        assert grown < RSS_GROWTH_LIMIT_KB, f"the daemon grew by {grown} kB"
        conn.sock.shutdown(socket.SHUT_WR)
        replies.join()  # the daemon half-closes once the last reply is out
    finally:
        conn.close()
        bystander.close()


def test_a_barrage_on_a_modern_connection_harms_nobody(
    daemon: DaemonProcess, held_lock: Callable[[bool], Held]
) -> None:
    """The same on a connection of the 2026-07-28 era (every line through the SDK)."""
    corpus = hostile_corpus("modern", count=600, modern=True)
    conn = RawConnection(daemon.socket_path)
    try:
        opening = {"jsonrpc": "2.0", "id": "probe-open", "method": "server/discover"}
        conn.send(frames({**opening, "params": {"_meta": MODERN_ENVELOPE}}))
        assert "result" in conn.reply_to("probe-open")  # type: ignore[arg-type]
        replies = Replies(conn.reader)
        barrage(conn.send, replies, corpus, held_lock(False), meta=MODERN_ENVELOPE)
        conn.sock.shutdown(socket.SHUT_WR)
        replies.join()
    finally:
        conn.close()


def test_a_barrage_through_the_shim_harms_nobody(
    daemon: DaemonProcess, project: Path, held_lock: Callable[[bool], Held]
) -> None:
    """Through a real shim process: the shim survives it, and exits cleanly at stdin's end."""
    corpus = hostile_corpus("shim")
    held = held_lock(True)
    args = [COORDINATORD, "shim", "--socket", str(daemon.socket_path), "--project", str(project)]
    with (project / "shim-stderr").open("w+b") as stderr:
        shim = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)
        assert shim.stdin is not None and shim.stdout is not None
        try:
            replies = Replies(shim.stdout)

            def send(data: bytes) -> None:
                assert shim.stdin is not None
                shim.stdin.write(data)
                shim.stdin.flush()

            send(frames({**INITIALIZE, "id": "probe-init"}))
            replies.wait_for({"probe-init"})
            send(frames(INITIALIZED))
            rss_before = rss_kb(daemon)
            barrage(send, replies, corpus, held)
            grown = rss_kb(daemon) - rss_before
            assert grown < RSS_GROWTH_LIMIT_KB, f"the daemon grew by {grown} kB"
            assert shim.poll() is None, "the shim died"
            shim.stdin.close()
            assert shim.wait(timeout=WAIT) == 0
            replies.join()
        finally:
            if shim.poll() is None:
                shim.kill()
                shim.wait(timeout=WAIT)
            shim.stdout.close()
            stderr.seek(0)
            said = stderr.read().decode(errors="replace")
        (project / "shim-stderr").unlink()
    assert "closed the connection" not in said, said


# --- first lines -----------------------------------------------------------------------------

OVERLONG_FIRST = (
    b'{"jsonrpc":"2.0","id":"first","method":"ping","params":{"v":"' + b"x" * (MAX_LINE + 8) + b'"}}'
)


@pytest.mark.parametrize(
    ("first", "reply_id", "code"),
    [
        (request_line("first", "ping", ',"params":' + nested(100_000) + "}"), "first", -32600),
        (
            request_line("first", "tools/call", ',"params":{"arguments":' + nested(10_000) + "}}"),
            "first",
            -32600,
        ),
        (b'{"type":"coordinatord-preamble","v":1,"agent":' + nested(10_000).encode() + b"}", None, -32600),
        (b'{"type":"coordinatord-preamble","v":1,"agent":"a\\ud800"}', None, -32600),
        (nested(100_000).encode(), None, -32600),
        (b'{"jsonrpc":"2.0","id":"first","method":"ping","params":{"a":"\xff"}}', "first", -32700),
        (b'{"jsonrpc":"2.0","id":"first","method":"ping","params":{', "first", -32700),
        (b"\xff\xfe\x00garbage", None, -32700),
        (OVERLONG_FIRST, "first", -32600),
        (
            b'{"jsonrpc":"2.0","id":"first","method":"tools/call","params":{"name":"redis_ping"}}',
            "first",
            -32602,
        ),
    ],
    ids=[
        "deep",
        "deep-arguments",
        "deep-preamble",
        "surrogate-preamble",
        "bare",
        "utf8",
        "cut",
        "garbage",
        "long",
        "early",
    ],
)
def test_a_hostile_first_line_is_answered_and_the_client_served(
    daemon: DaemonProcess, first: bytes, reply_id: str | None, code: int
) -> None:
    """A first line that cannot be parsed is no preamble: it gets its reply, and the connection
    goes on as a plain client."""
    conn = RawConnection(daemon.socket_path)
    try:
        conn.send(first + b"\n")
        reply = conn.reply()
        assert (reply["id"], reply["error"]["code"]) == (reply_id, code), reply
        conn.initialize("after-a-bad-start")
        conn.send(call(2, "redis_ping", {}))
        assert conn.reply_to(2)["result"]["content"][0]["text"] == "PONG"
    finally:
        conn.close()


def refused(sock_path: Path, first: bytes | None) -> dict[str, Any]:
    """The one line a connection refused at its first line gets, after which the daemon closes."""
    conn = RawConnection(sock_path)
    try:
        if first is not None:
            conn.send(first)
        reply = conn.reply()
        assert conn.reader.readline() == b"", "the connection stayed open"
        error = reply["error"]
        assert isinstance(error, dict)
        return error
    finally:
        conn.close()


def test_refusals_say_refused_and_whether_to_retry(daemon: DaemonProcess) -> None:
    """A bad preamble and unknown tool groups are refusals not to retry."""
    bad = refused(daemon.socket_path, b'{"type":"coordinatord-preamble","v":0}\n')
    assert bad["code"] == -32600 and "bad coordinatord preamble" in bad["message"]
    assert bad["data"] == {"refused": True, "retry": False}
    groups = refused(daemon.socket_path, Preamble("a", None, os.getpid(), tools=["nope"]).encode())
    assert "unknown tool group(s) nope" in groups["message"]
    assert groups["data"] == {"refused": True, "retry": False}


def test_a_full_daemon_refuses_with_retry() -> None:
    """Too many connections: a refusal the shim may retry later."""
    with running_daemon({"COORDINATORD_SERVER__MAX_CONNECTIONS": "1"}) as small:
        first = RawConnection(small.socket_path)
        try:
            first.initialize("first")
            busy = refused(small.socket_path, None)
            assert busy == {
                "code": -32001,
                "message": "too many connections (server.max_connections)",
                "data": {"refused": True, "retry": True},
            }
        finally:
            first.close()
