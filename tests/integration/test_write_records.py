"""The exactly-once wrapper's record (coordinatord/store/once.py) on real Valkey and real Redis 7,
spoken to over raw sockets so replies compare byte for byte: every reply shape a Lua script can
give comes back from a replayed write exactly as the first time, the script sees its KEYS and
ARGV without the record's, and a script that raises records nothing."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from coordinatord.call_ids import PROCESS_TOKEN, new_call_id
from coordinatord.keyspace import write_record_key
from coordinatord.store.once import exactly_once_source
from tests.support import ValkeyProcess, fresh_namespace
from tests.support_proxy import resp_end

SHAPES = {
    "string": "return 'hello'",
    "empty string": "return ''",
    "binary string": "return ARGV[1]",
    "utf-8 string": "return 'caf\\195\\169 \\226\\130\\172'",
    "integer": "return 42",
    "negative integer": "return -7",
    "fraction (truncated by Redis)": "return 3.99",
    "negative fraction": "return -2.5",
    "beyond 14 digits": "return 123456789012345678",
    "beyond 2^53": "return 2^53 + 2",
    "tiny": "return 1e-300",
    "true": "return true",
    "false": "return false",
    "nil": "return nil",
    "no return": "local unused = 1",
    "empty table": "return {}",
    "array": "return {1, 'two', 3.5, false, 'five'}",
    "array with a hole": "return {1, 2, nil, 4}",
    "nested arrays": "return {1, {2, {3, {'deep', {}}}}, {'x'}}",
    "status table": "return {ok = 'DONE'}",
    "status_reply": "return redis.status_reply('FINE')",
    "error table": "return {err = 'WRONG the kind of thing'}",
    "error_reply": "return redis.error_reply('ERR custom failure')",
    "statuses and errors inside an array": "return {{ok = 'OK'}, {err = 'E inside'}, 'after'}",
    "a server reply passed on": "return redis.call('TIME')",
    "local functions and a late return": (
        "local function twice(x) return x * 2 end\nlocal out = {}\n"
        "for i = 1, 3 do out[i] = twice(i) end\nreturn out"
    ),
}
BINARY_ARG = b"\x00\xff\r\n$5\r\nraw\x80"


class Raw:
    """One connection to a server, sending commands and reading whole replies as bytes."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(parts.path)
        else:
            self.sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379))
        self.sock.settimeout(10)
        self.buffer = bytearray()
        database = parts.path.lstrip("/") if parts.scheme != "unix" else ""
        if database:
            assert self.command(b"SELECT", database.encode()) == b"+OK\r\n"

    def command(self, *parts: bytes) -> bytes:
        self.sock.sendall(b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))
        while (end := resp_end(self.buffer)) is None:
            chunk = self.sock.recv(65536)
            assert chunk, "the server closed the connection"
            self.buffer += chunk
        reply = bytes(self.buffer[:end])
        del self.buffer[:end]
        return reply

    def eval(self, source: str, keys: list[str], args: list[bytes]) -> bytes:
        return self.command(
            b"EVAL", source.encode(), str(len(keys)).encode(), *(k.encode() for k in keys), *args
        )


@pytest.fixture(params=["valkey", "redis"])
def raw(request: pytest.FixtureRequest) -> Iterator[Raw]:
    """A raw connection to the session's Valkey, and to the machine's Redis 7 (database 13)."""
    server = request.getfixturevalue("valkey" if request.param == "valkey" else "real_redis")
    connection = Raw(server.url if isinstance(server, ValkeyProcess) else str(server))
    try:
        yield connection
    finally:
        connection.sock.close()


def record_call(body: str, key: str, args: list[bytes]) -> tuple[str, list[str], list[bytes]]:
    """The wrapped source, keys and args of one write of ``body`` (a fresh write id)."""
    record = write_record_key(key, f"{new_call_id()}.1")
    return exactly_once_source(body), [key, record], [*args, b"120"]


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_a_replayed_write_gives_the_first_reply_byte_for_byte(raw: Raw, shape: str) -> None:
    """The first call's reply is the unwrapped script's reply; a resend (same record) gets the
    same bytes again, for every reply shape (numbers beyond cjson's 14 digits, binary strings,
    nil, false, statuses and errors at any depth)."""
    body = SHAPES[shape]
    key = fresh_namespace().key("thing")
    args = [BINARY_ARG]
    plain = raw.eval(body, [key], args)
    source, keys, wrapped_args = record_call(body, key, args)
    first = raw.eval(source, keys, wrapped_args)
    again = raw.eval(source, keys, wrapped_args)
    if shape != "a server reply passed on":  # TIME moves on between the plain call and the first
        assert first == plain
    assert again == first
    assert raw.command(b"TTL", keys[1].encode()) in (b":120\r\n", b":119\r\n")


def test_the_record_key_is_in_the_slot_of_the_first_key() -> None:
    """The record of a write to a project key is in that project's hash tag (one Cluster slot)."""
    from redis.crc import key_slot

    ns = fresh_namespace()
    record = write_record_key(ns.key("task:progress:x"), f"{PROCESS_TOKEN}-1.1")
    assert record == ns.key(f"_once:{PROCESS_TOKEN}-1.1")
    assert key_slot(record.encode()) == key_slot(ns.key("anything").encode())
    with pytest.raises(ValueError, match="hash tag"):
        write_record_key("coord:leader:sweep", "x")


def test_the_script_sees_its_own_keys_and_args_only(raw: Raw) -> None:
    """KEYS and ARGV inside the wrapped script are the caller's, without the record's key and TTL."""
    body = "return {#KEYS, #ARGV, KEYS[1], KEYS[2], ARGV[1], ARGV[2]}"
    ns = fresh_namespace()
    source, keys, args = record_call(body, ns.key("a"), [b"x", b"y"])
    keys.insert(1, ns.key("b"))
    reply = raw.eval(source, keys, args)
    expected = [b"2", b"2", ns.key("a").encode(), ns.key("b").encode(), b"x", b"y"]
    assert reply == b"*6\r\n:2\r\n:2\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(v), v) for v in expected[2:])


def test_a_write_is_applied_once_however_often_it_is_sent(raw: Raw) -> None:
    """An RPUSH sent three times under one record is applied once; a new write id applies again."""
    ns = fresh_namespace()
    body = "return redis.call('RPUSH', KEYS[1], ARGV[1])"
    source, keys, args = record_call(body, ns.key("list"), [b"turn"])
    replies = [raw.eval(source, keys, args) for _ in range(3)]
    assert replies == [b":1\r\n"] * 3
    source, keys, args = record_call(body, ns.key("list"), [b"turn"])
    assert raw.eval(source, keys, args) == b":2\r\n"
    assert raw.command(b"LLEN", ns.key("list").encode()) == b":2\r\n"


def test_a_script_that_raises_records_nothing(raw: Raw) -> None:
    """An error raised (not returned) reaches the caller and leaves no record, so a resend runs
    the script again rather than replaying a failure it never recorded."""
    ns = fresh_namespace()
    body = "if redis.call('GET', KEYS[1]) == false then error('not yet') end\nreturn 'ran'"
    source, keys, args = record_call(body, ns.key("flag"), [])
    failed = raw.eval(source, keys, args)
    assert failed.startswith(b"-") and b"not yet" in failed
    assert raw.command(b"EXISTS", keys[1].encode()) == b":0\r\n"
    raw.command(b"SET", ns.key("flag").encode(), b"1")
    assert raw.eval(source, keys, args) == b"$3\r\nran\r\n"
