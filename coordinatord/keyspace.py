"""The one place where key names, the project namespace and TTLs are spelled.

Every key lives under ``coord:{<project id>}:``. The braces are a Redis Cluster hash tag, so a
project's multi-key scripts stay in one slot; because the project id can hold neither braces
nor glob characters, no user key or pattern appended after the prefix can name or match a key
of another project. The raw tools see keys without the prefix.

Pure logic, no I/O: tested without a server.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from coordinatord.errors import InvalidArgumentError, LimitExceededError

ROOT = "coord"
DEFAULT_PROJECT_ID = "default"

_SLUG_UNSAFE = re.compile(r"[^a-z0-9._-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# Rate-limit keys (`ratelimit:{service}:{period}`) live as long as their period, as the seed says.
PERIOD_SECONDS: Mapping[str, int] = {
    "second": 1,
    "minute": 60,
    "minutely": 60,
    "hour": 3_600,
    "hourly": 3_600,
    "day": 86_400,
    "daily": 86_400,
    "week": 604_800,
    "weekly": 604_800,
    "month": 2_592_000,
    "monthly": 2_592_000,
}
RATELIMIT_PREFIX = "ratelimit:"


def project_id_for(root: str) -> str:
    """A stable, readable id for a project root: ``<folder name>-<hash of the path>``.

    The hash keeps two folders with the same name apart; the name keeps ``tail`` readable.
    """
    name = root.rstrip("/").rsplit("/", 1)[-1].lower()
    slug = _SLUG_UNSAFE.sub("-", name).strip("-.")[:40] or "root"
    digest = hashlib.sha256(root.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{slug}-{digest}"


@dataclass(frozen=True, slots=True)
class Namespace:
    """One project's slice of the keyspace."""

    project_id: str

    @property
    def prefix(self) -> str:
        return f"{ROOT}:{{{self.project_id}}}:"

    def key(self, user_key: str) -> str:
        return self.prefix + user_key

    def keys(self, user_keys: Iterable[str]) -> list[str]:
        prefix = self.prefix
        return [prefix + key for key in user_keys]

    def pattern(self, user_pattern: str) -> str:
        # The prefix is literal text for MATCH: the project id holds no glob characters.
        return self.prefix + user_pattern

    def local_key(self, full_key: str) -> str | None:
        """The user's key for a full key, or ``None`` when it is not in this namespace."""
        prefix = self.prefix
        return full_key[len(prefix) :] if full_key.startswith(prefix) else None


@dataclass(frozen=True, slots=True)
class KeyRules:
    """Shape and size limits on what callers may send."""

    max_key_bytes: int
    max_value_bytes: int
    max_keys_per_call: int

    def check_key(self, key: str, argument: str = "key") -> str:
        if not key:
            raise InvalidArgumentError(f"argument {argument!r} must not be empty")
        if _CONTROL.search(key):
            raise InvalidArgumentError(
                f"argument {argument!r} must not contain control characters (NUL, newline…)"
            )
        size = len(key.encode("utf-8", "surrogatepass"))
        if size > self.max_key_bytes:
            raise LimitExceededError(
                f"argument {argument!r} is {size} bytes; "
                f"the limit is limits.max_key_bytes = {self.max_key_bytes}"
            )
        return key

    def check_keys(self, keys: list[str], argument: str = "keys") -> list[str]:
        if len(keys) > self.max_keys_per_call:
            raise LimitExceededError(
                f"argument {argument!r} has {len(keys)} keys; the limit is "
                f"limits.max_keys_per_call = {self.max_keys_per_call}"
            )
        for index, key in enumerate(keys):
            self.check_key(key, f"{argument}[{index}]")
        return keys

    def check_value(self, value: str, argument: str = "value") -> bytes:
        data = value.encode("utf-8", "surrogatepass")
        if len(data) > self.max_value_bytes:
            raise LimitExceededError(
                f"argument {argument!r} is {len(data)} bytes; the limit is "
                f"limits.max_value_bytes = {self.max_value_bytes}"
            )
        return data


@dataclass(frozen=True)
class TtlPolicy:
    """The seed's TTL table by key prefix, a default for other keys, and a ceiling."""

    default_s: int
    max_s: int
    prefixes: Mapping[str, int]

    def __post_init__(self) -> None:
        # Longest prefix first, so "agent:context:" wins over a configured "agent:".
        ordered = tuple(sorted(self.prefixes.items(), key=lambda item: -len(item[0])))
        object.__setattr__(self, "_ordered", ordered)

    def ttl_for(self, user_key: str) -> int:
        """The TTL a key gets when the caller names none."""
        if user_key.startswith(RATELIMIT_PREFIX):
            period = user_key.rsplit(":", 1)[-1].lower()
            # A period word ("daily") as in the seed, or a window in seconds ("60") as
            # ratelimit_hit writes it.
            seconds = int(period) if period.isdigit() and 0 < len(period) < 10 else PERIOD_SECONDS.get(period)
            seconds = seconds or None  # "ratelimit:x:0" has no period: fall back to the table
            if seconds is not None:
                return min(seconds, self.max_s)
        ordered: tuple[tuple[str, int], ...] = object.__getattribute__(self, "_ordered")
        for prefix, seconds in ordered:
            if user_key.startswith(prefix):
                return min(seconds, self.max_s)
        return min(self.default_s, self.max_s)

    def check_requested(self, seconds: int, argument: str = "ttl") -> int:
        """Refuse a TTL that is not positive or is above the ceiling."""
        if seconds <= 0:
            raise InvalidArgumentError(
                f"argument {argument!r} must be a positive number of seconds, got {seconds}; "
                "every key has a TTL (use redis_del to remove a key)"
            )
        if seconds > self.max_s:
            raise LimitExceededError(
                f"argument {argument!r} is {seconds} s; the limit is ttl.max_s = {self.max_s}"
            )
        return seconds


# --- Names of the coordination services' keys, inside a project namespace --------------------
# The seed's patterns hold the documents (so `redis_get` shows what the tools manage); indexes
# and counters live under "_idx:" and "_seq:", which the seed's patterns never use.

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

SESSIONS_INDEX = "_idx:sessions"
TASKS_INDEX = "_idx:tasks"
AGENTS_INDEX = "_idx:agents"
LOCKS_INDEX = "_idx:locks"
FENCING_COUNTER = "_seq:fencing"
AGENT_LOCKS_PREFIX = "_idx:locks_of:"
"""Set per agent: the resources it acquired and has not released. The sweep reads it to find a
gone agent's locks without walking every lock; a hint only (each lock is checked again)."""


def check_id(value: str, argument: str) -> str:
    """Ids that become part of key names and file names: 1-128 of ``A-Z a-z 0-9 . _ -``,
    starting with a letter or digit (so never ``..``, a slash, a colon or a glob character).
    """
    if not _ID.fullmatch(value):
        raise InvalidArgumentError(
            f"argument {argument!r} must be 1-128 characters of letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit; got {value[:80]!r}"
        )
    return value


def session_key(session_id: str) -> str:
    return f"agent:context:{session_id}"


def session_history_key(session_id: str) -> str:
    return f"agent:context:{session_id}:history"


def task_key(task_id: str) -> str:
    return f"task:progress:{task_id}"


def agent_status_key(agent: str) -> str:
    return f"agent:status:{agent}"


def lock_key(resource: str) -> str:
    return f"lock:{resource}"


def agent_locks_key(agent: str) -> str:
    return f"{AGENT_LOCKS_PREFIX}{agent}"


def ratelimit_key(service: str, window_s: int) -> str:
    return f"ratelimit:{service}:{window_s}"


def ratelimit_windows_key(service: str) -> str:
    """The set of window lengths in use for a service, so a reset finds them without SCAN."""
    return f"_idx:ratelimit:{service}"


# --- Keys outside any project namespace (shared by every daemon on one backend) ---------------

PROJECTS_KEY = f"{ROOT}:projects"
"""Hash: one field per (project, host), :func:`project_host_field`, → JSON {project, root, host,
last_seen}: where shims have announced each project on each host. Each host writes only its own
fields, so hosts never overwrite each other. (Fields written before hosts had their own are
the bare project id, JSON {root, host, last_seen}; still read.)"""


def project_host_field(project_id: str, host: str) -> str:
    """A registry field: ``<project>@<host>``. A host id has no '@', so the last one splits it."""
    return f"{project_id}@{host}"


def leader_key(job: str, host: str | None = None) -> str:
    """The lease that makes one daemon, of all sharing a backend, run a job's tick; with
    ``host``, one daemon of those on that host (for jobs that work on the host's files)."""
    return f"{ROOT}:leader:{job}" if host is None else f"{ROOT}:leader:{job}:{host}"


# --- More names inside a project namespace -----------------------------------------------------

ACTIVITY_STREAM = "_activity"
"""Capped stream of activity events (tool calls and job actions), newest last."""
AGENTS_ACTIVE = "_idx:agents_active"
"""Zset of agents counted active (score: last heartbeat ms); the sweep moves agents out of it."""
MEMORY_BANK_INDEX = "cache:memory-bank:index"


def memory_bank_key(file: str) -> str:
    return f"cache:memory-bank:{file}"


# --- Heartbeat sweep and lock reaper (jobs/sweep.py, jobs/reaper.py) -------------------------

AGENTS_INACTIVE = "_idx:agents_inactive"
"""Zset of agents the sweep reported inactive and not yet gone (score: last heartbeat ms)."""
AGENTS_GONE = "_idx:agents_gone"
"""Zset of agents the sweep found gone whose locks are still to be released (score: server time
ms of the finding; only locks taken before it are released). Emptied as the locks are released."""


# --- Presence across daemons (services/presence.py) and the host of a session ------------------
# In the project's hash tag: the sweep's scripts read the presence index together with the
# agents indexes, and the presence scripts write it together with the per-agent record sets.

PRESENCE_INDEX = "_idx:presence"
"""Zset: agent → the expiry (server ms) of its latest connection record, on any daemon; the
sweep counts an agent present while this is in the future. Entries past their expiry are
dropped by every presence write and every sweep step; the key lives as long as its latest."""
PRESENCE_RECORDS_PREFIX = "_idx:presence_of:"


def presence_records_key(agent: str) -> str:
    """Zset: one member per open connection of the agent on any daemon (JSON {daemon, conn,
    host, pid}) → its expiry (server ms). The key lives as long as its latest record."""
    return f"{PRESENCE_RECORDS_PREFIX}{agent}"


def session_host_key(session_id: str) -> str:
    """String: the host id of the daemon that last wrote the session (its archive is written
    there only); lives and dies with the session's document."""
    return f"_idx:session_host:{session_id}"


# --- File reservations (services/files.py) ----------------------------------------------------

FILE_RESERVATIONS = "_idx:files"
"""Hash: reservation id → JSON {id, agent, mode, paths, reason, fencing, acquired_at_ms,
expires_at_ms} (server ms). One key per project, so the reservation script reads every live
reservation in one slot; it lives as long as its longest lease, and lapsed entries are removed
by the next write. Fencing numbers come from the locks' counter (FENCING_COUNTER)."""


# --- Task graph: dependencies, the ready index, claims (services/tasks.py) ---------------------
# Kept beside the task documents rather than in them, so that task_get/task_list replies and the
# documents redis_get shows keep the seed's shape. All under "_idx:": the raw tools cannot change
# them, and the scripts build member keys from these prefixes (one hash tag, so one slot).

TASKS_READY = "_idx:tasks_ready"
"""Zset: the project's ready tasks (every dependency completed, not completed, nobody's claim)
→ :func:`coordinatord.services.task_graph_rules.ready_score` (priority, then age); TTL
``tasks.ttl_s``, refreshed whenever a task enters it."""
TASK_GRAPH_PREFIX = "_idx:task_graph:"
TASK_DEPENDENTS_PREFIX = "_idx:task_dependents:"
TASKS_READY_LABEL_PREFIX = "_idx:tasks_ready_label:"
TASK_CLAIMS_PREFIX = "_idx:task_claims_of:"


def task_graph_key(task_id: str) -> str:
    """Hash: a task's place in the graph — ``deps`` (its dependencies, comma-separated),
    ``left`` (how many are not completed), ``priority``, ``labels`` (comma-separated),
    ``score`` (its ready-index score), ``done`` (``1`` while completed), ``claimed_by`` and
    ``claimed_ms`` (server time). Lives and is refreshed with the task's document."""
    return f"{TASK_GRAPH_PREFIX}{task_id}"


def task_dependents_key(task_id: str) -> str:
    """Set: the tasks that depend on this one (whose ``left`` its completion lowers)."""
    return f"{TASK_DEPENDENTS_PREFIX}{task_id}"


def tasks_ready_label_key(label: str) -> str:
    """Zset: the ready tasks that carry ``label``, scored as :data:`TASKS_READY`."""
    return f"{TASKS_READY_LABEL_PREFIX}{label}"


def task_claims_key(agent: str) -> str:
    """Set: the tasks the agent claimed (how the heartbeat sweep finds a gone agent's claims;
    a hint, each claim is checked again)."""
    return f"{TASK_CLAIMS_PREFIX}{agent}"


# --- Keys the raw tools may read but not change ------------------------------------------------
# The services' indexes, counters and log. Changed by hand they fall out of step with the
# documents they describe, a string written over one breaks its owner's scripts, and a lower
# _seq:fencing would hand out fencing numbers again; so the raw tools may only read them.

COUNTER_PREFIX = "_seq:"
WRITE_RECORD_PREFIX = "_once:"
INTERNAL_PREFIXES = ("_idx:", COUNTER_PREFIX, WRITE_RECORD_PREFIX)
INTERNAL_KEYS = frozenset({ACTIVITY_STREAM})


def is_counter_key(user_key: str) -> bool:
    """Whether a key is a counter that must never go back (the fencing counter): a migration
    merging two namespaces keeps the larger value."""
    return user_key.startswith(COUNTER_PREFIX)


def is_internal_key(user_key: str) -> bool:
    """Whether a key (without the namespace prefix) is one the coordination services own alone."""
    return user_key.startswith(INTERNAL_PREFIXES) or user_key in INTERNAL_KEYS


def check_not_internal(user_key: str, argument: str = "key") -> str:
    """Refuse a key the raw tools must not write, expire or delete."""
    if is_internal_key(user_key):
        raise InvalidArgumentError(
            f"argument {argument!r} names {user_key[:80]!r}, one of coordinatord's own index keys "
            "(_idx:*, _seq:*, _once:*, _activity), managed by the coordination tools; the raw tools may "
            "read it but not write, expire or delete it"
        )
    return user_key


# --- Agent messages (services/messages.py) -----------------------------------------------------
# A message is one document; who may see it is in per-agent indexes (scored by message id,
# which is a send time in µs, so the scripts drop entries older than messages.ttl_s by score).

MESSAGE_COUNTER = "_seq:messages"
"""String: the project's last message id. A missing counter restarts from the server clock in
µs, so ids keep rising after it expires."""
BROADCASTS_INDEX = "_idx:msg_broadcast"
"""Zset: id → id of every live message sent to "*"; stored once, read by every agent."""
MESSAGE_PREFIX = "msg:"
INBOX_PREFIX = "_idx:inbox:"
MESSAGE_READ_PREFIX = "_idx:msg_read:"
MESSAGE_ACKED_PREFIX = "_idx:msg_acked:"
MESSAGE_THREAD_PREFIX = "_idx:msg_thread:"
MESSAGE_ACKS_PREFIX = "_idx:msg_acks:"


def message_key(message_id: str) -> str:
    """String: the message document (JSON), readable with ``redis_get``."""
    return f"{MESSAGE_PREFIX}{message_id}"


def inbox_key(agent: str) -> str:
    """Zset: id → id of the live messages addressed to ``agent`` by name."""
    return f"{INBOX_PREFIX}{agent}"


def message_read_key(agent: str) -> str:
    """Zset: id → id of the messages ``agent`` has read (its read state, per recipient)."""
    return f"{MESSAGE_READ_PREFIX}{agent}"


def message_acked_key(agent: str) -> str:
    """Zset: id → id of the messages ``agent`` has acknowledged."""
    return f"{MESSAGE_ACKED_PREFIX}{agent}"


def message_thread_key(thread_id: str) -> str:
    """Zset: id → id of a thread's messages: the thread's order is the ids' order."""
    return f"{MESSAGE_THREAD_PREFIX}{thread_id}"


def message_acks_key(message_id: str) -> str:
    """Set: the agents that acknowledged a message sent with ack_required."""
    return f"{MESSAGE_ACKS_PREFIX}{message_id}"


# --- Exactly-once writes (store/once.py) -------------------------------------------------------
# A script that changes state records its reply under the id of the call that sent it, beside
# the keys it wrote (the same hash tag, so the same Cluster slot and the same script call), for
# long enough that every resend of that call by the daemon finds it: a resend after a lost reply
# gets the first reply instead of applying the write again.

WRITE_RECORD_TTL_S = 120
"""The least time a write record lives (seconds). The daemon resends a command only inside one
bounded call (``backend.timeout_s``, at most 300 s), so the window is the longer of this and
twice that bound (:func:`write_record_ttl_s`)."""


def write_record_ttl_s(timeout_s: float) -> int:
    """How long a write record lives with ``backend.timeout_s`` = ``timeout_s``: past the last
    moment a resend of its call can reach the server, with room to spare."""
    return max(WRITE_RECORD_TTL_S, math.ceil(2 * timeout_s))


def hash_tag(key: str) -> str | None:
    """The key's Redis Cluster hash tag (the text inside its first ``{...}``), or ``None`` when it
    has none (then the whole key decides its slot)."""
    start = key.find("{")
    if start < 0:
        return None
    end = key.find("}", start + 1)
    return key[start + 1 : end] if end > start + 1 else None


def write_record_key(first_key: str, write_id: str) -> str:
    """String: the reply a script gave to the write ``write_id``, in the hash tag of the script's
    first key (``coord:{<project>}:_once:<write id>`` for every project key), so in its slot."""
    tag = hash_tag(first_key)
    if tag is None:
        raise ValueError(
            f"an exactly-once script's first key must carry a hash tag (a project key); got {first_key!r}"
        )
    return f"{ROOT}:{{{tag}}}:{WRITE_RECORD_PREFIX}{write_id}"


def is_write_record(user_key: str) -> bool:
    """Whether a key (without the namespace prefix) is a write record: transport state of the
    daemon, not the project's (hidden from ``redis_keys``, not migrated)."""
    return user_key.startswith(WRITE_RECORD_PREFIX)
