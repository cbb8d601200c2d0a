"""Key names, namespaces and the TTL policy: pure logic."""

from __future__ import annotations

import fnmatch

import pytest

from coordinatord import keyspace
from coordinatord.errors import InvalidArgumentError, LimitExceededError
from coordinatord.keyspace import (
    KeyRules,
    Namespace,
    TtlPolicy,
    check_not_internal,
    is_internal_key,
    project_id_for,
)
from coordinatord.settings import DEFAULT_TTL_PREFIXES

POLICY = TtlPolicy(default_s=86_400, max_s=30 * 86_400, prefixes=DEFAULT_TTL_PREFIXES)
RULES = KeyRules(max_key_bytes=64, max_value_bytes=100, max_keys_per_call=3)


def test_project_ids_are_readable_stable_and_distinct() -> None:
    """Two folders with the same name get different ids; one folder always gets the same."""
    a = project_id_for("/home/me/work/app")
    b = project_id_for("/home/me/other/app")
    assert a.startswith("app-") and b.startswith("app-")
    assert a != b
    assert project_id_for("/home/me/work/app") == a


@pytest.mark.parametrize("root", ["/x/we{ird}*?[name]", "/x/" + "n" * 500, "/x/..", "/"])
def test_project_ids_hold_no_glob_or_hash_tag_characters(root: str) -> None:
    """A project id can never smuggle braces or glob characters into the key prefix."""
    pid = project_id_for(root)
    assert not set(pid) & set("{}*?[]\\")
    assert len(pid) <= 51


def test_namespace_prefixes_and_strips() -> None:
    """Keys gain the project prefix going in and lose it coming out; foreign keys are rejected."""
    ns = Namespace("app-1234")
    assert ns.key("task:progress:t1") == "coord:{app-1234}:task:progress:t1"
    assert ns.local_key("coord:{app-1234}:task:progress:t1") == "task:progress:t1"
    assert ns.local_key("coord:{app-9999}:task:progress:t1") is None


@pytest.mark.parametrize("pattern", ["*", "*}*", "{app-9999}*", "../*", "[c]oord*", "\\*"])
def test_patterns_cannot_match_another_projects_keys(pattern: str) -> None:
    """Whatever the user's pattern, the full pattern only matches keys under our prefix."""
    ours, theirs = Namespace("app-1"), Namespace("app-2")
    foreign = theirs.key("secret")
    # fnmatchcase has the same * ? [..] semantics as Redis MATCH for these cases.
    assert not fnmatch.fnmatchcase(foreign, ours.pattern(pattern))


def test_seed_ttl_table_by_prefix() -> None:
    """A key without a TTL gets its class's TTL from the seed's table, else the default."""
    assert POLICY.ttl_for("agent:context:s1") == 86_400
    assert POLICY.ttl_for("agent:status:kilocode") == 300
    assert POLICY.ttl_for("cache:memory-bank:index") == 3_600
    assert POLICY.ttl_for("task:progress:t") == 172_800
    assert POLICY.ttl_for("temp:upload:abc") == 3_600
    assert POLICY.ttl_for("anything:else") == 86_400


def test_rate_limit_keys_live_as_long_as_their_period() -> None:
    """ratelimit:{service}:{period} expires with its period; unknown periods use the table."""
    assert POLICY.ttl_for("ratelimit:firecrawl:daily") == 86_400
    assert POLICY.ttl_for("ratelimit:firecrawl:hourly") == 3_600
    assert POLICY.ttl_for("ratelimit:firecrawl:minute") == 60
    assert POLICY.ttl_for("ratelimit:firecrawl:90") == 90
    assert POLICY.ttl_for("ratelimit:firecrawl:0") == DEFAULT_TTL_PREFIXES["ratelimit:"]
    assert POLICY.ttl_for("ratelimit:firecrawl:fortnight") == DEFAULT_TTL_PREFIXES["ratelimit:"]


def test_longest_prefix_wins_and_ceiling_applies() -> None:
    """A more specific configured prefix wins; no default can exceed the ceiling."""
    policy = TtlPolicy(default_s=999_999, max_s=1_000, prefixes={"a:": 10, "a:b:": 20})
    assert policy.ttl_for("a:b:c") == 20
    assert policy.ttl_for("a:c") == 10
    assert policy.ttl_for("z") == 1_000


@pytest.mark.parametrize("seconds", [0, -1, -100])
def test_non_positive_ttl_is_refused(seconds: int) -> None:
    """Every key has a TTL: zero or negative requests are refused, naming the argument."""
    with pytest.raises(InvalidArgumentError, match="'ttl' must be a positive"):
        POLICY.check_requested(seconds)


def test_ttl_above_ceiling_is_refused_naming_the_limit() -> None:
    """A TTL above ttl.max_s is refused with the setting's name."""
    with pytest.raises(LimitExceededError, match=r"ttl\.max_s"):
        POLICY.check_requested(POLICY.max_s + 1)


@pytest.mark.parametrize("key", ["", "a\x00b", "line\nbreak", "tab\tkey"])
def test_bad_keys_are_refused(key: str) -> None:
    """Empty keys and keys with control characters (NUL included) are refused."""
    with pytest.raises(InvalidArgumentError, match="'key'"):
        RULES.check_key(key)


def test_key_and_value_sizes_name_their_limits() -> None:
    """Keys and values above the configured sizes are refused with the limit's name."""
    with pytest.raises(LimitExceededError, match="max_key_bytes = 64"):
        RULES.check_key("k" * 65)
    with pytest.raises(LimitExceededError, match="max_value_bytes = 100"):
        RULES.check_value("é" * 51)  # 102 bytes in UTF-8
    with pytest.raises(LimitExceededError, match="max_keys_per_call = 3"):
        RULES.check_keys(["a", "b", "c", "d"])
    assert RULES.check_value("v" * 100) == b"v" * 100


def test_every_service_key_outside_the_seed_patterns_is_internal() -> None:
    """Each "_"-named key or prefix keyspace.py defines, and the keys built from them, counts as
    internal, so a new index cannot slip past the raw tools' guard unnoticed."""
    named = {v for v in vars(keyspace).values() if isinstance(v, str) and v.startswith("_")}
    assert {"_idx:sessions", "_seq:fencing", "_activity", "_idx:locks_of:", "_idx:agents_gone"} <= named
    built = {keyspace.agent_locks_key("kilocode"), keyspace.ratelimit_windows_key("firecrawl")}
    assert all(is_internal_key(key) for key in named | built)


@pytest.mark.parametrize(
    "key",
    [
        "agent:context:s1",
        "agent:context:s1:history",
        "lock:x",
        "task:progress:t",
        "ratelimit:firecrawl:60",
        "cache:memory-bank:index",
        "_idx",
        "_idxfoo:x",
        "_IDX:sessions",
        "x_idx:sessions",
        "_activity:mine",
        "_activityx",
        "_scratch",
    ],
)
def test_documents_and_look_alikes_are_not_internal(key: str) -> None:
    """The seed's documents stay writable, and only the exact reserved names are reserved
    (Redis keys are case-sensitive, so neither is this check)."""
    assert not is_internal_key(key)
    assert check_not_internal(key) == key


def test_internal_keys_are_refused_naming_argument_and_key() -> None:
    """The refusal names the argument, the key (a long one cut to 80 characters) and whose keys
    these are."""
    with pytest.raises(InvalidArgumentError) as caught:
        check_not_internal("_seq:fencing", "keys[2]")
    assert str(caught.value) == (
        "argument 'keys[2]' names '_seq:fencing', one of coordinatord's own index keys "
        "(_idx:*, _seq:*, _once:*, _activity), managed by the coordination tools; the raw tools may read it "
        "but not write, expire or delete it"
    )
    with pytest.raises(InvalidArgumentError, match=r"names '_idx:x{75}', one of"):
        check_not_internal("_idx:" + "x" * 500)
