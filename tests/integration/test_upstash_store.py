"""The Upstash REST store against a local Upstash-compatible server in front of a real Valkey."""

from __future__ import annotations

import json
import shutil
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis as redis_sync
import trustme
from structlog.testing import capture_logs

from coordinatord.errors import BackendError, BackendUnavailableError, ConfigError
from coordinatord.keyspace import ACTIVITY_STREAM, KeyRules, TtlPolicy
from coordinatord.services.kv import KvService
from coordinatord.settings import DEFAULT_TTL_PREFIXES, BackendSettings, load_settings
from coordinatord.store import Batch, RedisStore, Reply, Store, open_store
from coordinatord.store.upstash import UpstashStore
from tests.e2e.conftest import connect, text_of
from tests.support import COORDINATORD, DaemonProcess, ValkeyProcess, fresh_namespace, short_tmpdir
from tests.support_upstash import FakeUpstash, upstash_server

pytestmark = pytest.mark.anyio

TOKEN = "tok-7c1e-never-in-messages"
FAST = BackendSettings(timeout_s=1.0, connect_timeout_s=0.5, retries=2, retry_backoff_base_s=0.01)

Command = tuple[str | int | float, ...]


@pytest.fixture(scope="module")
def fake(valkey: ValkeyProcess) -> Iterator[FakeUpstash]:
    with upstash_server(valkey, TOKEN) as server:
        yield server


@pytest.fixture
def own_fake(valkey: ValkeyProcess) -> Iterator[FakeUpstash]:
    """A server of the test's own, for tests that stop or stall it."""
    with upstash_server(valkey, TOKEN) as server:
        yield server


@pytest.fixture
async def upstash(fake: FakeUpstash) -> AsyncIterator[UpstashStore]:
    store = UpstashStore(fake.url, TOKEN, BackendSettings())
    try:
        yield store
    finally:
        await store.aclose()


@pytest.fixture
async def redis_store(valkey: ValkeyProcess) -> AsyncIterator[Store]:
    store = RedisStore.from_url(valkey.url, BackendSettings())
    try:
        yield store
    finally:
        await store.aclose()


def commands(p: str) -> list[Command]:
    """Commands the services use (and a few more), on keys under the prefix ``p``."""
    return [
        ("PING",),
        ("SET", f"{p}s", "v", "EX", 60),
        ("SET", f"{p}s", "v", "EX", 60, "NX"),
        ("SET", f"{p}s", "w", "EX", 60, "GET"),
        ("GET", f"{p}s"),
        ("GET", f"{p}none"),
        ("MGET", f"{p}s", f"{p}none"),
        ("GETRANGE", f"{p}s", 0, 0),
        ("EXPIRE", f"{p}s", 100),
        ("EXPIRE", f"{p}none", 5),
        ("TTL", f"{p}none"),
        ("PTTL", f"{p}none"),
        ("EXISTS", f"{p}s", f"{p}none"),
        ("SETEX", f"{p}e", 60, "x"),
        ("INCR", f"{p}n"),
        ("INCRBYFLOAT", f"{p}f", 1.5),
        ("HSET", f"{p}h", "f", "v", "g", "w"),
        ("HGETALL", f"{p}h"),
        ("HGETALL", f"{p}none"),
        ("HGET", f"{p}h", "f"),
        ("HMGET", f"{p}h", "f", "x"),
        ("HEXISTS", f"{p}h", "f"),
        ("ZADD", f"{p}z", 1, "a", 2.5, "b"),
        ("ZRANGE", f"{p}z", 0, -1),
        ("ZRANGE", f"{p}z", 0, -1, "WITHSCORES"),
        ("ZREVRANGE", f"{p}z", 0, -1, "WITHSCORES"),
        ("ZRANGEBYSCORE", f"{p}z", "-inf", "+inf", "WITHSCORES", "LIMIT", 0, 10),
        ("ZRANGEBYSCORE", f"{p}z", "-inf", "(2"),
        ("ZREVRANGEBYSCORE", f"{p}z", "+inf", "-inf"),
        ("ZREVRANGEBYSCORE", f"{p}z", "+inf", 0, "WITHSCORES", "LIMIT", 0, 1),
        ("ZSCORE", f"{p}z", "b"),
        ("ZSCORE", f"{p}z", "nobody"),
        ("ZMSCORE", f"{p}z", "a", "nobody"),
        ("ZCOUNT", f"{p}z", "-inf", "+inf"),
        ("ZINCRBY", f"{p}z", 1, "a"),
        ("ZSCAN", f"{p}z", 0, "COUNT", 10),
        ("ZREM", f"{p}z", "a"),
        ("SADD", f"{p}set", "x", "y"),
        ("SMEMBERS", f"{p}set"),
        ("SMEMBERS", f"{p}none"),
        ("SISMEMBER", f"{p}set", "x"),
        ("XADD", f"{p}x", "MAXLEN", "~", 10, "1-1", "f", "v"),
        ("XADD", f"{p}x", "2-1", "g", "w", "h", "ü"),
        ("XRANGE", f"{p}x", "-", "+"),
        ("XREVRANGE", f"{p}x", "+", "-", "COUNT", 1),
        ("XREAD", "COUNT", 5, "STREAMS", f"{p}x", "0"),
        ("XLEN", f"{p}x"),
        ("RPUSH", f"{p}l", "a", "b"),
        ("LRANGE", f"{p}l", 0, -1),
        ("LLEN", f"{p}l"),
        ("TYPE", f"{p}l"),
        ("PERSIST", f"{p}l"),
        ("EXPIRE", f"{p}l", 60),
        ("EVAL", "return {1, 'a', {2, 'b'}, false}", 0),
        ("EVAL", "return redis.status_reply('FINE')", 0),
        ("EVAL", "return redis.call('GET', KEYS[1])", 1, f"{p}s"),
        ("DEL", f"{p}s", f"{p}h", f"{p}none"),
    ]


def unprefixed(value: Any, prefix: str) -> Any:
    """``value`` with ``prefix`` cut from every string in it (replies that name keys), shapes kept."""
    if isinstance(value, str):
        return value.replace(prefix, "k:")
    if isinstance(value, list | tuple):
        return type(value)(unprefixed(item, prefix) for item in value)
    return value


async def test_raw_replies_are_the_same_over_rest_and_redis_py(
    upstash: UpstashStore, redis_store: Store
) -> None:
    """The escape hatch gives the same raw RESP2 value over REST as through redis-py, for every
    command the services use (and a few more): what the typed operations parse is one shape."""
    ns = fresh_namespace()
    r, u = ns.key("r:"), ns.key("u:")
    over_redis = [unprefixed(await redis_store.execute(*c), r) for c in commands(r)]
    over_rest = [unprefixed(await upstash.execute(*c), u) for c in commands(u)]
    for command, expected, got in zip(commands("k:"), over_redis, over_rest, strict=True):
        assert got == expected, command
        assert type(got) is type(expected), command
        if isinstance(expected, list) and expected:
            assert [type(item) for item in got] == [type(item) for item in expected], command


def raw_batch(cmds: list[Command]) -> tuple[Batch, list[Reply[Any]]]:
    batch = Batch()
    return batch, [batch.raw(*command) for command in cmds]


async def test_batch_replies_match_and_take_one_round_trip(
    fake: FakeUpstash, upstash: UpstashStore, redis_store: Store
) -> None:
    """A batch is one POST /pipeline, and its replies are those of a redis-py pipeline."""
    ns = fresh_namespace()
    r, u = ns.key("r:"), ns.key("u:")
    batch, replies = raw_batch(commands(r))
    await redis_store.run(batch)
    expected = unprefixed([reply.value for reply in replies], r)
    batch, replies = raw_batch(commands(u))
    before = len(fake.paths)
    await upstash.run(batch)
    assert fake.paths[before:] == ["/pipeline"]
    assert unprefixed([reply.value for reply in replies], u) == expected
    await upstash.run(Batch())
    assert len(fake.paths) == before + 1


async def test_batch_with_a_refused_command_names_it(upstash: UpstashStore) -> None:
    """One refused command fails the batch with an error naming its position and the server's reason."""
    ns = fresh_namespace()
    batch = Batch()
    batch.set(ns.key("s"), "v", 60)
    batch.raw("HGETALL", ns.key("s"))
    with pytest.raises(BackendError) as caught:
        await upstash.run(batch)
    assert not isinstance(caught.value, BackendUnavailableError)
    assert "command #2" in str(caught.value) and "WRONGTYPE" in str(caught.value)


async def test_named_operations(upstash: UpstashStore) -> None:
    """get/set/ttl/expire/exists/delete behave as on RedisStore, including for absent keys."""
    ns = fresh_namespace()
    a, b, none = ns.key("a"), ns.key("b"), ns.key("none")
    assert await upstash.ping() is True
    await upstash.set(a, '{"ü":"x"}', 100)
    await upstash.set(b, "2", 100)
    assert await upstash.get(a) == '{"ü":"x"}'
    assert await upstash.get(none) is None
    assert 90 < await upstash.ttl(a) <= 100
    assert await upstash.ttl(none) == -2
    assert await upstash.expire(a, 7200) is True
    assert 7190 < await upstash.ttl(a) <= 7200
    assert await upstash.expire(none, 10) is False
    assert await upstash.exists([a, b, none]) == 2
    assert await upstash.exists([]) == 0
    assert await upstash.delete([a, b, none]) == 2
    assert await upstash.delete([]) == 0
    assert await upstash.exists([a, b]) == 0


async def test_scan_matches_and_caps(upstash: UpstashStore) -> None:
    """scan returns the matching keys, at most `limit` of them, and says when it cut the list."""
    ns = fresh_namespace()
    for index in range(8):
        await upstash.set(ns.key(f"t:{index}"), "x", 60)
    await upstash.set(ns.key("other"), "x", 60)
    keys, truncated = await upstash.scan(ns.pattern("t:*"), 5)
    assert truncated is True and len(keys) == 5 and len(set(keys)) == 5
    keys, truncated = await upstash.scan(ns.pattern("t:*"), 100)
    assert truncated is False and sorted(keys) == sorted(ns.key(f"t:{i}") for i in range(8))
    assert await upstash.scan(ns.pattern("nothing:*"), 5) == ([], False)


async def test_script_loads_itself_and_survives_script_flush(
    upstash: UpstashStore, valkey: ValkeyProcess
) -> None:
    """A script runs on first use (NOSCRIPT, then EVAL caches it), by EVALSHA next, and after SCRIPT FLUSH."""
    ns = fresh_namespace()
    script = upstash.script("redis.call('SET', KEYS[1], ARGV[1], 'EX', 60) return {KEYS[1], ARGV[1], 7}")
    assert await script([ns.key("s")], ["one"]) == [ns.key("s"), "one", 7]
    assert await upstash.execute("SCRIPT", "EXISTS", script.sha) == [1]
    assert await script([ns.key("s")], [2]) == [ns.key("s"), "2", 7]
    client = redis_sync.Redis(unix_socket_path=str(valkey.socket_path))
    try:
        client.script_flush()
    finally:
        client.close()
    assert await upstash.execute("SCRIPT", "EXISTS", script.sha) == [0]
    assert await script([ns.key("s")], ["three"]) == [ns.key("s"), "three", 7]
    assert await upstash.get(ns.key("s")) == "three"


async def test_script_error_is_a_backend_error(upstash: UpstashStore) -> None:
    """An error raised by a script comes back as BackendError with the script's message."""
    script = upstash.script("return redis.error_reply('ERR lease lost for ' .. ARGV[1])", exactly_once=False)
    with pytest.raises(BackendError, match="lease lost for job-1") as caught:
        await script([], ["job-1"])
    assert not isinstance(caught.value, BackendUnavailableError)


async def test_refused_command_names_the_backend(upstash: UpstashStore, fake: FakeUpstash) -> None:
    """A command the server refuses raises BackendError naming the URL and the server's reason."""
    with pytest.raises(BackendError) as caught:
        await upstash.execute("NOSUCHCOMMAND", "x")
    message = str(caught.value)
    assert fake.url in message and "unknown command" in message
    assert not isinstance(caught.value, BackendUnavailableError)


async def test_wrong_token_is_a_clear_error_without_the_token(fake: FakeUpstash) -> None:
    """A rejected token fails fast with BackendError naming the URL and the setting, never a token."""
    store = UpstashStore(fake.url, "wrong-token-3f9a", FAST)
    try:
        with pytest.raises(BackendError) as caught:
            await store.get("k")
    finally:
        await store.aclose()
    message = str(caught.value)
    assert not isinstance(caught.value, BackendUnavailableError)
    assert fake.url in message and "UPSTASH_REDIS_REST_TOKEN" in message and "401" in message
    assert "wrong-token-3f9a" not in message and TOKEN not in message


async def test_server_down_then_back(own_fake: FakeUpstash) -> None:
    """A dead server fails calls within the timeout, naming the URL only; once back, calls succeed."""
    store = UpstashStore(own_fake.url, TOKEN, FAST)
    try:
        await store.set("coord:{upstash-down}:k", "before", 60)
        own_fake.stop()
        with anyio.fail_after(FAST.timeout_s + 2), pytest.raises(BackendUnavailableError) as caught:
            await store.get("coord:{upstash-down}:k")
        assert own_fake.url in str(caught.value) and TOKEN not in str(caught.value)
        own_fake.start()
        assert await store.get("coord:{upstash-down}:k") == "before"
    finally:
        await store.aclose()


async def test_stalled_server_times_out_then_recovers(own_fake: FakeUpstash) -> None:
    """A server that takes requests but never answers costs a call backend.timeout_s, not a hang."""
    store = UpstashStore(own_fake.url, TOKEN, FAST)
    try:
        own_fake.stall = True
        with anyio.fail_after(FAST.timeout_s + 2), pytest.raises(BackendUnavailableError) as caught:
            await store.ping()
        assert "did not answer within 1 s" in str(caught.value)
        own_fake.stall = False
        assert await store.ping() is True
    finally:
        await store.aclose()


async def test_sync_token_goes_back_with_the_next_request(own_fake: FakeUpstash) -> None:
    """Each request carries the Upstash-Sync-Token of the previous reply (read-your-writes)."""
    store = UpstashStore(own_fake.url, TOKEN, FAST)
    try:
        await store.set("coord:{upstash-sync}:k", "v", 60)
        await store.get("coord:{upstash-sync}:k")
    finally:
        await store.aclose()
    first, second = own_fake.sync_tokens_seen[-2:]
    assert first == "" and second.startswith("sync-")


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path, Path]:
    """A CA whose certificate the HTTPS server uses, and the PEM files of it and of an unrelated CA."""
    root = tmp_path_factory.mktemp("upstash-tls")
    ca, other = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    other.cert_pem.write_to_path(str(root / "other-ca.pem"))
    return ca, root / "ca.pem", root / "other-ca.pem"


@pytest.fixture(scope="module")
def https_fake(valkey: ValkeyProcess, tls_files: tuple[trustme.CA, Path, Path]) -> Iterator[FakeUpstash]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_files[0].issue_cert("127.0.0.1", "localhost").configure_cert(context)
    with upstash_server(valkey, TOKEN, tls=context) as server:
        yield server


async def test_https_with_the_configured_ca(
    https_fake: FakeUpstash, tls_files: tuple[trustme.CA, Path, Path]
) -> None:
    """Over HTTPS, backend.tls_ca_file is the trust anchor and the server's name is checked."""
    store = UpstashStore(https_fake.url, TOKEN, BackendSettings(tls_ca_file=tls_files[1]))
    try:
        assert https_fake.url.startswith("https://")
        assert await store.ping() is True
    finally:
        await store.aclose()


async def test_https_with_an_unknown_ca_is_refused(
    https_fake: FakeUpstash, tls_files: tuple[trustme.CA, Path, Path]
) -> None:
    """A server certificate from a CA not configured fails the call with the verification error."""
    store = UpstashStore(https_fake.url, TOKEN, FAST.model_copy(update={"tls_ca_file": tls_files[2]}))
    try:
        with anyio.fail_after(FAST.timeout_s + 2), pytest.raises(BackendUnavailableError) as caught:
            await store.ping()
    finally:
        await store.aclose()
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value) and https_fake.url in str(caught.value)


async def test_kv_service_over_upstash(upstash: UpstashStore) -> None:
    """The raw key/value service works unchanged on the REST store."""
    rules = KeyRules(max_key_bytes=256, max_value_bytes=1024, max_keys_per_call=100)
    policy = TtlPolicy(86_400, 30 * 86_400, DEFAULT_TTL_PREFIXES)
    kv, ns = KvService(upstash, rules, policy, 5), fresh_namespace()
    assert await kv.set(ns, "agent:context:s1", '{"lastTask":"x"}', None) == 86_400
    assert await kv.get(ns, "agent:context:s1") == '{"lastTask":"x"}'
    assert 86_390 < await kv.ttl(ns, "agent:context:s1") <= 86_400
    for index in range(7):
        await kv.set(ns, f"task:progress:t{index}", "{}", None)
    keys, truncated = await kv.keys(ns, "task:progress:*")
    assert truncated is True and len(keys) == 5
    assert await kv.expire(ns, "agent:context:s1", 60) is True
    assert await kv.exists(ns, ["agent:context:s1", "nope"]) == 1
    assert await kv.delete(ns, ["agent:context:s1", "nope"]) == 1
    assert await kv.ping() is True


def settings_with(env: dict[str, str], tmp: Path) -> Any:
    empty = tmp / "empty.toml"
    empty.touch()
    return load_settings({"state_dir": str(tmp / "state")}, config_file=str(empty), environ=env)


async def test_upstash_wins_over_redis_url(fake: FakeUpstash, tmp_path: Path) -> None:
    """With both Upstash and REDIS_URL set, Upstash is used, and the log says REDIS_URL was ignored."""
    env = {
        "UPSTASH_REDIS_REST_URL": fake.url,
        "UPSTASH_REDIS_REST_TOKEN": TOKEN,
        "REDIS_URL": "redis://127.0.0.1:1/0",
    }
    with capture_logs() as logs:
        async with open_store(settings_with(env, tmp_path)) as store:
            assert isinstance(store, UpstashStore) and fake.url in store.name
            assert await store.ping() is True
    selected = [entry for entry in logs if entry["event"] == "backend_selected"]
    assert len(selected) == 1 and selected[0]["kind"] == "upstash"
    assert "REDIS_URL" in selected[0]["ignored"] and TOKEN not in str(logs)
    assert any(entry["event"] == "backend_connected" for entry in logs)


async def test_upstash_url_without_token_is_a_config_error(tmp_path: Path) -> None:
    """An Upstash URL without its token stops start-up with a message naming the missing variable."""
    env = {"UPSTASH_REDIS_REST_URL": "https://example.upstash.io", "REDIS_URL": "redis://127.0.0.1:1/0"}
    with pytest.raises(ConfigError, match="UPSTASH_REDIS_REST_TOKEN"):
        async with open_store(settings_with(env, tmp_path)):
            pass


async def test_upstash_url_that_is_not_http_is_a_config_error(tmp_path: Path) -> None:
    """A REST URL without http(s):// is refused at start, naming the setting and never the token."""
    env = {"UPSTASH_REDIS_REST_URL": "example.upstash.io", "UPSTASH_REDIS_REST_TOKEN": TOKEN}
    with pytest.raises(ConfigError, match="UPSTASH_REDIS_REST_URL") as caught:
        async with open_store(settings_with(env, tmp_path)):
            pass
    assert TOKEN not in str(caught.value)


async def test_daemon_serves_seed_tools_over_upstash(fake: FakeUpstash) -> None:
    """`coordinatord serve` with the seed's Upstash variables answers redis_set/redis_get through a shim."""
    root, project = short_tmpdir(), short_tmpdir()
    env = {"UPSTASH_REDIS_REST_URL": fake.url, "UPSTASH_REDIS_REST_TOKEN": TOKEN}
    daemon = DaemonProcess(root, env=env)
    try:
        daemon.start()
        async with connect(daemon.socket_path, project=project) as client:
            value = '{"lastTask":"implement-feature","progress":75}'
            args = {"key": "agent:context:session123", "value": value}
            assert text_of(await client.call_tool("redis_set", args)) == "OK"
            assert text_of(await client.call_tool("redis_get", {"key": "agent:context:session123"})) == value
            ttl = int(text_of(await client.call_tool("redis_ttl", {"key": "agent:context:session123"})))
            assert 86_390 <= ttl <= 86_400
        await daemon.wait_for_log("backend_selected", kind="upstash")
        assert TOKEN not in daemon.log_text()
    finally:
        code = daemon.stop()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(project, ignore_errors=True)
    assert code == 0, daemon.output.decode(errors="replace")


async def test_scan_pages_and_unlink(upstash: UpstashStore, redis_store: Store) -> None:
    """scan_page walks a pattern page by page to cursor "0" and unlink deletes what it found,
    with the same results over REST as over the Redis protocol."""
    for store in (upstash, redis_store):
        ns = fresh_namespace()
        for index in range(12):
            await store.set(ns.key(f"k{index}"), "x", 60)
        seen: set[str] = set()
        cursor = "0"
        while True:
            cursor, keys = await store.scan_page(cursor, ns.pattern("*"), 5)
            seen.update(keys)
            if cursor == "0":
                break
        assert seen == {ns.key(f"k{index}") for index in range(12)}
        assert await store.unlink(sorted(seen)) == 12
        assert await store.unlink([]) == 0
        assert await store.scan(ns.pattern("*"), 100) == ([], False)


async def test_tail_reads_the_activity_over_upstash(upstash: UpstashStore, fake: FakeUpstash) -> None:
    """`coordinatord tail` with the Upstash variables reads the stream over REST, as the daemon
    writes it there (not REDIS_URL, which it ignores as the daemon does)."""
    ns = fresh_namespace()
    stream = ns.key(ACTIVITY_STREAM)
    for index, name in enumerate(["redis_get", "redis_set"], start=1):
        fields = ["ts", f"1771000000.{index}", "agent", "kilocode", "project", ns.project_id]
        fields += ["kind", "tool", "name", name, "key", f"k{index}", "outcome", "ok", "duration_ms", "0.5"]
        await upstash.execute("XADD", stream, f"{index}-0", *fields)
    tmp = short_tmpdir()
    try:
        config = tmp / "empty.toml"
        config.touch()
        env = {
            "COORDINATORD_CONFIG": str(config),
            "PATH": "/usr/bin:/bin",
            "UPSTASH_REDIS_REST_URL": fake.url,
            "UPSTASH_REDIS_REST_TOKEN": TOKEN,
            "REDIS_URL": "redis://127.0.0.1:1/0",  # nothing listens: reading it would fail
        }
        command = [COORDINATORD, "tail", "--state-dir", str(tmp / "state"), "--project", ns.project_id]
        with anyio.fail_after(30):
            done = await anyio.run_process([*command, "-n", "5", "--json"], env=env, check=False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert done.returncode == 0, done.stderr
    shown = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(e["id"], e["name"], e["key"]) for e in shown] == [
        ("1-0", "redis_get", "k1"),
        ("2-0", "redis_set", "k2"),
    ]
    assert TOKEN.encode() not in done.stdout + done.stderr
