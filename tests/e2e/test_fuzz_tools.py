"""The bad-input budget: over 10 000 generated tool calls, drawn by hypothesis from every tool's
input schema (``build_registry()``, the ``full`` selection) and broken in every way a client
can break them: wrong types, missing and unknown arguments, arguments that are no object, huge
strings (near and over ``limits.max_value_bytes``, over ``server.max_line_bytes``), deep
nesting, unicode edge cases (lone surrogates as JSON escapes, NUL, RTL marks, emoji, combining
marks), numbers at the edges (-0, 1e308, huge integers), null and duplicate ids.

Asserted: the daemon never crashes (it answers a ping after each barrage, its log has no
``tool_crashed`` and no ``internal_error`` outcome), every request gets its reply under its own
id (a line it cannot serve its JSON-RPC error, docs/shim.md "Bad input"), refused calls write
nothing (checked on a project namespace of their own against the backend itself), and the
daemon's memory stays bounded.

Most calls go on raw sockets, pipelined (one writer thread, replies read in bulk); a share goes
through a real shim. Draws are derandomized: every run sends the same calls.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import valkey
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from coordinatord import paths
from coordinatord.preamble import Preamble
from coordinatord.tool_groups import selection
from coordinatord.tools import build_registry
from tests.e2e.conftest import INITIALIZE, INITIALIZED, RawConnection, frames
from tests.support import COORDINATORD, DaemonProcess, ShimProcess, running_daemon

pytestmark = pytest.mark.e2e

MAX_VALUE = 1024 * 1024  # limits.max_value_bytes, default
MAX_LINE = 4 * 1024 * 1024  # server.max_line_bytes, default
WAIT = 60.0  # the bound on every read
RSS_GROWTH_LIMIT_KB = 50 * 1024
SCHEMAS: dict[str, dict[str, Any]] = {
    tool["name"]: tool["inputSchema"] for tool in build_registry().listing(selection(["full"]))
}
# Keys that any connection or call writes whatever its outcome: the activity log, presence,
# the known-projects hash, the jobs' leader leases, and the write records of the activity flushes.
BOOKKEEPING = ("_activity", "_idx:presence", "_once:", "coord:projects", "coord:leader:")

# --- values ----------------------------------------------------------------------------------

ATOMS = [
    "a",
    "key",
    "canary",
    "canary-1",
    "*",
    "?",
    "[",
    "\\",
    "%",
    "/",
    "../",
    "../../etc/passwd",
    ".",
    " ",
    "\n",
    "\t",
    "\x00",
    "\x7f",
    "\u202e",  # right-to-left override
    "\u200f",  # right-to-left mark
    "\u0301",  # a combining mark on its own
    "e\u0301",
    "\U0001f600",
    "\U0001f469\u200d\U0001f4bb",  # a ZWJ sequence
    "\ufeff",
    "\uffff",
    "\u0000\u0000",
    "_idx:tasks",
    "_activity",
    "coord:{x}:",
    "memory-bank/brief.md",
]
SURROGATES = ["\ud800", "\udfff", "\udc00\ud800"]  # written as JSON escapes: refused as a line
texts = st.lists(st.sampled_from(ATOMS), max_size=5).map("".join) | st.text(max_size=8)
rare_surrogate = st.sampled_from(SURROGATES).map(lambda s: "k" + s)
strings = st.one_of(*[texts] * 30, rare_surrogate)
HUGE_SIZES = (MAX_VALUE - 64, MAX_VALUE, MAX_VALUE + 1, 2 * MAX_VALUE, MAX_LINE + 16)
huge_strings = st.tuples(st.sampled_from(HUGE_SIZES), st.sampled_from(["x", "\U0001f600", "\u0301"])).map(
    lambda size_char: size_char[1] * (size_char[0] // len(size_char[1].encode()))
)
EDGE_INTS = [0, -1, 1, 2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63), 2**64, 10**30, -(10**30)]
ints = st.sampled_from(EDGE_INTS) | st.integers(-1000, 100_000)
# Stand-ins, spliced into the line after json.dumps (which cannot write them): a number of
# more digits than the daemon reads (refused as a line) and nesting deeper than Python recurses.
HUGE_INT = "\x00huge-int\x00"
DEEPEST = "\x00deepest\x00"
SPLICES = {
    json.dumps(HUGE_INT).encode(): b"1" + b"0" * 4_400,
    json.dumps(DEEPEST).encode(): b"[" * 5_000 + b"]" * 5_000,
}
EDGE_FLOATS = [-0.0, 0.5, 1.5, 1e308, -1e308, 5e-324, 3600.0, -1.0]
floats = st.sampled_from(EDGE_FLOATS)
scalars = st.one_of(st.none(), st.booleans(), ints, floats, texts)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)


def deep(depth: int, kind: str) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value] if kind == "array" else {"d": value}
    return value


deep_values = st.tuples(
    st.sampled_from([50, 150, 200, 201, 250, 500]), st.sampled_from(["array", "object"])
).map(lambda args: deep(*args)) | st.just(DEEPEST)


def json_types(value: Any) -> set[str]:
    """The schema types ``value`` passes as (strict, as the daemon checks; an integral float
    counts as an integer, null as not given)."""
    if value is None:
        return {"null"}
    if isinstance(value, bool):
        return {"boolean"}
    if isinstance(value, int):
        return {"integer"}
    if isinstance(value, float):
        return {"integer", "number"} if value.is_integer() else {"number"}
    if isinstance(value, str):
        return {"string"}
    if isinstance(value, list):
        return {"array"}
    return {"object"}


def types_of(schema: dict[str, Any]) -> set[str]:
    declared = schema.get("type", "string")
    return set(declared) if isinstance(declared, list) else {declared}


def valid_value(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A value of the parameter's type (its bounds not always kept)."""
    options: list[st.SearchStrategy[Any]] = []
    for kind in types_of(schema):
        if kind == "string":
            options.append(st.sampled_from(schema["enum"]) | strings if "enum" in schema else strings)
        elif kind == "integer":
            options.append(ints)
        elif kind == "boolean":
            options.append(st.booleans())
        elif kind == "array":
            options.append(st.lists(strings, max_size=4))
        elif kind == "object":
            options.append(st.dictionaries(texts, json_values, max_size=4))
    return st.one_of(options)


def wrong_value(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A value of no type the parameter takes (never null: null means "not given")."""
    allowed = types_of(schema)
    candidates = st.one_of(st.booleans(), ints, floats, texts, st.lists(json_values, max_size=3), json_values)
    return candidates.filter(lambda v: v is not None and not (json_types(v) & allowed))


# --- calls -----------------------------------------------------------------------------------

HOW = ["valid"] * 6 + ["wrong_type"] * 4 + ["missing"] * 2 + ["extra"] * 2 + ["not_object", "no_arguments"]
HOW += ["huge", "deep", "edge_number", "null_values"]
REFUSED_HOW = ["wrong_type", "missing", "extra", "not_object"]


@st.composite
def tool_call(draw: st.DrawFn, refused_only: bool = False) -> dict[str, Any]:
    """``params`` of one ``tools/call``. With ``refused_only``: only breakages the argument
    check must refuse before the tool runs."""
    name = draw(st.sampled_from(sorted(SCHEMAS)))
    schema = SCHEMAS[name]
    props: dict[str, dict[str, Any]] = schema.get("properties", {})
    required: list[str] = schema.get("required", [])
    hows = [h for h in REFUSED_HOW if h != "missing" or required] if refused_only else HOW
    if refused_only and not props:
        hows = ["extra", "not_object"]
    how = draw(st.sampled_from(hows))
    arguments: dict[str, Any] = {}
    for param, param_schema in props.items():
        if param in required or draw(st.booleans()):
            arguments[param] = draw(valid_value(param_schema))
    if "wait_ms" in arguments and isinstance(arguments["wait_ms"], int):
        arguments["wait_ms"] = 0  # a lock_acquire that waits would only slow the barrage
    if how == "wrong_type" and props:
        param = draw(st.sampled_from(sorted(props)))
        arguments[param] = draw(wrong_value(props[param]))
    elif how == "missing" and required:
        del arguments[draw(st.sampled_from(required))]
    elif how in ("extra", "wrong_type"):  # wrong_type on a tool without parameters: extra
        unknown = [name for name in ("zz", "agent", "_meta", "__proto__", "key2") if name not in props]
        arguments[draw(st.sampled_from(unknown))] = draw(json_values)
    elif how == "not_object":
        return {
            "name": name,
            "arguments": draw(st.one_of(st.lists(scalars, max_size=2), ints, texts, floats)),
        }
    elif how == "no_arguments":
        return {"name": name}
    elif how == "huge" and props and draw(st.integers(0, 19)) == 0:  # 1 MB a piece: a few dozen
        arguments[draw(st.sampled_from(sorted(props)))] = draw(huge_strings)
    elif how == "deep" and props:
        arguments[draw(st.sampled_from(sorted(props)))] = draw(deep_values)
    elif how == "edge_number" and props:
        arguments[draw(st.sampled_from(sorted(props)))] = draw(
            st.sampled_from([*EDGE_FLOATS, HUGE_INT, 2**100])
        )
    elif how == "null_values" and props:
        arguments = {param: None for param in props} | draw(
            st.dictionaries(st.sampled_from(["zz"]), st.none())
        )
    return {"name": name, "arguments": arguments}


BATCH = 10


@functools.cache
def drawn(examples: int, refused_only: bool) -> list[dict[str, Any]]:
    """``examples`` times ``BATCH`` calls' params, the same every run (drawn once per process)."""
    out: list[dict[str, Any]] = []

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(tool_call(refused_only), min_size=BATCH, max_size=BATCH))
    def collect(calls: list[dict[str, Any]]) -> None:
        out.extend(calls)

    collect()
    return out


def request(request_id: Any, params: dict[str, Any]) -> bytes:
    """One request line; lone surrogates become JSON escapes (ensure_ascii)."""
    message = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}
    line = json.dumps(message).encode()
    for stand_in, text in SPLICES.items():
        line = line.replace(stand_in, text)
    return line + b"\n"


@functools.cache
def encoded(examples: int, refused_only: bool, tag: str) -> tuple[tuple[Any, bytes], ...]:
    """(id, request line) pairs, ids ``<tag>-<n>`` and integers in turn."""
    lines = []
    for n, params in enumerate(drawn(examples, refused_only)):
        request_id = f"{tag}-{n}" if n % 2 else 1_000_000 + n
        lines.append((request_id, request(request_id, params)))
    return tuple(lines)


def ids_of(lines: tuple[tuple[Any, bytes], ...]) -> list[Any]:
    return [request_id for request_id, _ in lines]


def blob_of(lines: tuple[tuple[Any, bytes], ...]) -> bytes:
    return b"".join(line for _, line in lines)


# --- driving a daemon ------------------------------------------------------------------------


def pipelined(conn: RawConnection, blob: bytes, count: int) -> list[dict[str, Any]]:
    """Writes ``blob`` from a thread of its own while reading ``count`` replies here, so neither
    side blocks on a full buffer; every read is bounded by the socket's timeout."""
    failure: list[BaseException] = []

    def write() -> None:
        try:
            conn.send(blob)
        except OSError as exc:
            failure.append(exc)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    replies: list[dict[str, Any]] = []
    for _ in range(count):
        line = conn.reader.readline()
        assert line, f"the connection closed after {len(replies)} replies; {failure}"
        replies.append(json.loads(line))
    writer.join(timeout=WAIT)
    assert not writer.is_alive() and not failure, failure
    return replies


def check_replies(sent_ids: list[Any], replies: list[dict[str, Any]]) -> Counter[str]:
    """Exactly one reply per id sent (ids repeated as often as sent), each a result or an
    error; returns how many of each kind."""
    assert Counter(map(repr, (r.get("id") for r in replies))) == Counter(map(repr, sent_ids))
    kinds: Counter[str] = Counter()
    for reply in replies:
        if "error" in reply:
            kinds[f"error {reply['error']['code']}"] += 1
        else:
            assert isinstance(reply["result"].get("content"), list), reply
            kinds["isError" if reply["result"].get("isError") else "ok"] += 1
    return kinds


def ping(conn: RawConnection, request_id: str) -> None:
    conn.send(frames({"jsonrpc": "2.0", "id": request_id, "method": "ping"}))
    assert conn.reply_to(request_id)["result"] == {}  # type: ignore[arg-type]


def rss_kb(daemon: DaemonProcess) -> int:
    assert daemon.process is not None
    for line in Path(f"/proc/{daemon.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS line")


def check_log(daemon: DaemonProcess) -> None:
    crashed = [
        event
        for event in daemon.log_events()
        if event.get("event") == "tool_crashed" or event.get("outcome") == "internal_error"
    ]
    assert not crashed, crashed[:3]


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    with running_daemon() as process:
        yield process


@pytest.fixture
def project() -> Iterator[Path]:
    """A project root of its own (so a namespace no other test writes), removed after."""
    root = Path(f"/tmp/cd-fuzz-{uuid.uuid4().hex[:8]}")
    (root / ".git").mkdir(parents=True)
    try:
        yield root
    finally:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


def connect(daemon: DaemonProcess, project: Path, agent: str) -> RawConnection:
    conn = RawConnection(daemon.socket_path)
    conn.sock.settimeout(WAIT)
    conn.send(Preamble(agent, paths.canonical_root(project), os.getpid()).encode())
    conn.initialize(agent)
    return conn


@pytest.fixture
def backend(daemon: DaemonProcess) -> Iterator[Any]:
    """The daemon's embedded Valkey, read directly (not through the tools under test)."""
    client: Any = valkey.Valkey(unix_socket_path=str(daemon.state_dir / "valkey.sock"))
    try:
        yield client
    finally:
        client.close()


def snapshot(client: Any) -> dict[bytes, tuple[bytes | None, int]]:
    """Every key but the bookkeeping ones: its serialized value and its TTL (ms)."""
    out = {}
    for key in client.scan_iter(count=1000):
        if any(mark.encode() in key for mark in BOOKKEEPING):
            continue
        out[key] = (client.dump(key), int(client.pttl(key)))
    return out


# --- the tests -------------------------------------------------------------------------------

BIG_LINE = 64 * 1024
RAW_EXAMPLES = 880  # times BATCH calls, over RAW_CONNECTIONS connections at once
RAW_CONNECTIONS = 4
REFUSED_EXAMPLES = 100
SHIM_EXAMPLES = 40
figures: dict[str, Any] = {}


def test_generated_calls_on_raw_sockets_get_their_replies_and_crash_nothing(
    daemon: DaemonProcess, project: Path
) -> None:
    """8 800 generated calls on four pipelined connections at once: one reply per id, a ping
    answered after, nothing logged as crashed, RSS grown by less than 50 MB."""
    lines = encoded(RAW_EXAMPLES, False, "raw")
    conns = [connect(daemon, project, f"fuzz-{n}") for n in range(RAW_CONNECTIONS)]
    try:
        rss_before = rss_kb(daemon)
        started = time.monotonic()
        # The calls carrying a megabyte go one at a time (their replies would be all the memory
        # measured); the rest pipelined.
        big = tuple(item for item in lines if len(item[1]) > BIG_LINE)
        small = tuple(item for item in lines if len(item[1]) <= BIG_LINE)
        shares = [small[n::RAW_CONNECTIONS] for n in range(RAW_CONNECTIONS)]
        results: dict[int, list[dict[str, Any]]] = {}
        errors: list[BaseException] = []

        def drive(n: int) -> None:
            try:
                results[n] = pipelined(conns[n], blob_of(shares[n]), len(shares[n]))
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=drive, args=(n,), daemon=True) for n in range(RAW_CONNECTIONS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=4 * WAIT)
        assert not errors, errors
        assert not any(thread.is_alive() for thread in threads), "a connection never got all its replies"
        kinds: Counter[str] = Counter()
        for n in range(RAW_CONNECTIONS):
            kinds += check_replies(ids_of(shares[n]), results[n])
        for request_id, line in big:
            conns[0].send(line)
            kinds += check_replies([request_id], [conns[0].reply()])
        elapsed = time.monotonic() - started
        for n, conn in enumerate(conns):
            ping(conn, f"after-{n}")
        rss_after = rss_kb(daemon)
        figures.update(raw_calls=len(lines), raw_s=round(elapsed, 2), rss_kb=(rss_before, rss_after))
        figures["raw_kinds"] = dict(kinds)
        assert rss_after - rss_before < RSS_GROWTH_LIMIT_KB, figures
        # The mix reached the tools, not only the framing: most calls were served or refused
        # by a tool, some got past every check.
        assert kinds["ok"] >= len(lines) // 10 and kinds["isError"] >= len(lines) // 4, kinds
    finally:
        for conn in conns:
            conn.close()
    check_log(daemon)
    print(f"fuzz figures: {figures}")


def test_refused_calls_write_nothing(daemon: DaemonProcess, project: Path, backend: Any) -> None:
    """1 000 calls the argument checks must refuse, on a project of their own seeded with canary
    keys the calls aim at: each refused, and no key of the backend (bookkeeping aside) created,
    changed, deleted or given a longer TTL."""
    lines = encoded(REFUSED_EXAMPLES, True, "refused")
    conn = connect(daemon, project, "refused")
    try:
        seed = [
            ("redis_set", {"key": "canary", "value": "v", "ttl": 3600}),
            ("redis_set", {"key": "canary-1", "value": "v", "ttl": 3600}),
            ("session_save", {"session_id": "canary", "context": {"a": 1}}),
            ("task_create", {"task_id": "canary", "steps": ["a", "b"]}),
            ("lock_acquire", {"resource": "canary", "ttl": 3600}),
            ("files_reserve", {"paths": ["canary"], "ttl_s": 3600}),
            ("message_send", {"to": "*", "subject": "canary", "body": "canary"}),
            ("agent_register", {"capabilities": ["canary"]}),
        ]
        blob = b"".join(request(f"seed-{n}", {"name": t, "arguments": a}) for n, (t, a) in enumerate(seed))
        seeded = pipelined(conn, blob, len(seed))
        assert check_replies([f"seed-{n}" for n in range(len(seed))], seeded) == {"ok": len(seed)}, seeded
        before = snapshot(backend)
        replies = pipelined(conn, blob_of(lines), len(lines))
        kinds = check_replies(ids_of(lines), replies)
        ping(conn, "after-refused")
        after = snapshot(backend)
    finally:
        conn.close()
    # Refused: an isError result or a JSON-RPC error (-32602 for arguments that are no object,
    # -32600 for a line with a lone surrogate or too long), never a success.
    sent = dict(lines)
    accepted = [
        (r["id"], sent[r["id"]][:300]) for r in replies if "result" in r and not r["result"].get("isError")
    ]
    assert "ok" not in kinds, accepted[:3]
    assert set(after) == set(before), set(after) ^ set(before)
    for key, (value, ttl) in before.items():
        assert after[key][0] == value, key
        assert after[key][1] <= ttl or ttl < 0, key  # never refreshed
    figures.update(refused_calls=len(lines), refused_kinds=dict(kinds))
    check_log(daemon)


def test_generated_calls_through_a_shim_with_null_and_duplicate_ids(
    daemon: DaemonProcess, project: Path
) -> None:
    """400 generated calls through a real shim, plus requests with a null id (taken for
    notifications: no reply at all) and ids sent twice (two replies each): every reply under its
    id, the shim alive, then a clean exit at stdin's end."""
    lines = encoded(SHIM_EXAMPLES, False, "shim")
    extra: list[tuple[Any, bytes]] = []
    for n in range(20):
        params = drawn(SHIM_EXAMPLES, False)[n]
        extra.append((None, request(None, params)))  # null id: taken for a notification, no reply
        extra.append((f"dup-{n}", request(f"dup-{n}", params)))
        extra.append((f"dup-{n}", request(f"dup-{n}", params)))  # the same id, the first maybe in flight
    sent = (*lines, *extra)
    args = [
        COORDINATORD,
        "shim",
        "--socket",
        str(daemon.socket_path),
        "--project",
        str(project),
        "--no-autostart",
    ]
    with ShimProcess(args, cwd=project) as shim:
        shim.send({**INITIALIZE, "id": "init"})
        assert "result" in shim.reply(WAIT)
        shim.send(INITIALIZED)
        assert shim.process.stdin is not None
        started = time.monotonic()
        shim.process.stdin.write(blob_of(sent))
        shim.process.stdin.flush()
        answered = [request_id for request_id in ids_of(sent) if request_id is not None]
        replies = [shim.reply(WAIT) for _ in answered]
        figures.update(shim_calls=len(sent), shim_s=round(time.monotonic() - started, 2))
        kinds = check_replies(answered, replies)  # none under null
        shim.send({"jsonrpc": "2.0", "id": "after", "method": "ping"})
        assert shim.reply(WAIT) == {"jsonrpc": "2.0", "id": "after", "result": {}}  # nothing else came
        assert shim.close(WAIT) == 0
    figures["shim_kinds"] = dict(kinds)
    check_log(daemon)


def test_pipelined_reads_of_a_megabyte_value_keep_memory_bounded(
    daemon: DaemonProcess, project: Path
) -> None:
    """A 1 MB value read back by 200 pipelined redis_get calls: the daemon reads no more of a
    connection's lines while server.max_calls_in_flight of its calls are unanswered, so its RSS
    stays within 50 MB of where it was (it grew by 640 MB before that bound)."""
    conn = connect(daemon, project, "pipelined-big")
    try:
        blob = request("set", {"name": "redis_set", "arguments": {"key": "big", "value": "x" * 1_000_000}})
        assert check_replies(["set"], pipelined(conn, blob, 1)) == {"ok": 1}
        reads = tuple(
            (f"get-{n}", request(f"get-{n}", {"name": "redis_get", "arguments": {"key": "big"}}))
            for n in range(200)
        )
        rss_before = rss_kb(daemon)
        assert check_replies(ids_of(reads), pipelined(conn, blob_of(reads), len(reads))) == {"ok": 200}
        grown = rss_kb(daemon) - rss_before
    finally:
        conn.close()
    assert grown < RSS_GROWTH_LIMIT_KB, f"the daemon grew by {grown} kB"


def test_the_budget_is_met(daemon: DaemonProcess) -> None:
    """At least 10 000 generated calls in all, and the daemon still answers."""
    total = len(encoded(RAW_EXAMPLES, False, "raw")) + len(encoded(REFUSED_EXAMPLES, True, "refused"))
    total += len(encoded(SHIM_EXAMPLES, False, "shim")) + 60
    assert total >= 10_000, total
    conn = RawConnection(daemon.socket_path)
    try:
        conn.initialize("last")
        ping(conn, "last")
    finally:
        conn.close()
    print(f"fuzz figures: {figures}")
    with socket.socket(socket.AF_UNIX) as probe:  # the socket is still there and served
        probe.connect(str(daemon.socket_path))
