"""Leased, fenced, re-entrant locks on named resources (a file, a migration, a port).

Key layout, inside the project namespace:

- ``lock:{resource}`` — the lock document ``{"token", "agent", "fencing", "acquired_at_ms"}``,
  written with ``PX`` = the lease, so a holder that dies loses the lock when its lease ends.
- ``_idx:locks`` — a sorted set, resource → lease end (ms, server clock). It serves
  ``lock_list`` without SCAN; its TTL always covers the longest lease it lists, and entries
  whose lease ended are dropped by the next acquisition or listing.
- ``_seq:fencing`` — the project's fencing counter (TTL :data:`FENCING_COUNTER_TTL_S`,
  refreshed on every acquisition). A missing counter starts from the server clock in µs, so a
  counter that expired in a quiet month still hands out larger numbers than before.

Atomicity: acquire, release and renew are one Lua script each (``lua/lock_*.lua``); each reads
the lock and acts on it inside the server, so there is no check-then-set anywhere. All times
come from the server's clock (``TIME``), so daemons on different machines sharing one Redis
agree on leases.

Semantics worth knowing:

- Re-entry is by agent name: a second ``acquire`` by the holding agent returns the same token
  and fencing number and extends (never shortens) the lease. It does not count: one
  ``release`` frees the lock. ``reentered`` in the result says when this happened.
- The token is a capability: ``release``/``renew`` act for whoever presents it.
- A refused release or renew (nobody holds the lock, or it is held under another token) is a
  result, not an error: for a lease-based lock "your lease already ended" is an expected outcome
  the caller must act on (stop writing, re-acquire), and the result carries the facts it needs
  (reason, current holder, remaining lease). Errors are kept for calls that are malformed.
- Clean-up is never needed for correctness (a lock is its key, and the key's lease ends by
  itself); it keeps the index and ``lock_list`` true. :meth:`LockService.reap` (the lock
  reaper) drops index entries without a lock and re-scores entries behind their lock's real
  lease; :meth:`LockService.release_locks_of_gone` (the heartbeat sweep) and ``reap`` release
  locks whose holder the sweep marked gone (``_idx:agents_gone``), and only those it took
  before that mark, compared inside one script (``lua/lock_release_gone.lua``,
  ``lua/lock_reap.lua``). The sweep finds them through ``_idx:locks_of:{agent}``, the set of
  resources each agent acquired (kept by acquire, release, renew and the clean-ups, with a TTL
  that covers the agent's longest lease); the reaper walks the whole index and so also catches
  what a cut-short sweep left. A holder that never registered is never gone: its locks end
  with their lease.
- Waiting (``wait_ms``) polls with capped exponential backoff and jitter, never sleeping past
  the deadline nor past the holder's remaining lease; a release through this daemon wakes its
  longest local waiter at once (no pub/sub: every backend supports plain polling).
"""

from __future__ import annotations

import json
import random
import re
import secrets
from collections import deque
from collections.abc import Collection, Sequence
from typing import Literal

import anyio
from pydantic import BaseModel, ConfigDict, Field

from coordinatord.clock import Clock, system_clock
from coordinatord.errors import InvalidArgumentError, LimitExceededError
from coordinatord.keyspace import (
    AGENT_LOCKS_PREFIX,
    AGENTS_GONE,
    FENCING_COUNTER,
    LOCKS_INDEX,
    Namespace,
    agent_locks_key,
    lock_key,
)
from coordinatord.services.shared import lua
from coordinatord.settings import LockSettings
from coordinatord.store import Batch, Reply, Store

MAX_RESOURCE_BYTES = 512
MAX_TOKEN_CHARS = 128
FENCING_COUNTER_TTL_S = 30 * 86_400
# Index entries are kept this long past their lease end; lock_list skips them anyway.
INDEX_GRACE_MS = 1_000
LIST_MAX = 1_000
GONE_AGENTS_PER_CALL = 100
"""Gone agents whose locks one script call releases: a few locks each keep the call short."""
BACKOFF_BASE_S = 0.002
BACKOFF_CAP_S = 0.25
UNKNOWN_HOLDER = "(unknown: not a lock document)"

_ACQUIRE, _RELEASE, _RENEW = (
    lua(f"lock_{n}", after="lock_document") for n in ("acquire", "release", "renew")
)
_LIST = lua("lock_list")
_REAP, _RELEASE_GONE, _SUMMARY = lua("lock_reap"), lua("lock_release_gone"), lua("lock_summary")


# --- Results ----------------------------------------------------------------------------------


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True)


class LockAcquireResult(_Result):
    acquired: bool = Field(description="true when the caller now holds the lock")
    token: str | None = Field(description="pass to lock_release / lock_renew; null when not acquired")
    fencing: int | None = Field(
        description="rises with every new acquisition; attach it to writes so stale holders can be refused"
    )
    held_by: str | None = Field(description="the agent holding the lock (the caller when acquired)")
    expires_in: float | None = Field(
        description="seconds left on the holder's lease (ms precision); null if it has no expiry"
    )
    reentered: bool = Field(
        default=False,
        description="the caller already held it: same token, lease extended; one release frees it",
    )


ReleaseReason = Literal["released", "not_held", "token_mismatch"]
RenewReason = Literal["renewed", "not_held", "token_mismatch"]


class LockReleaseResult(_Result):
    resource: str
    released: bool
    reason: ReleaseReason = Field(
        description="released; not_held (nobody holds it: released or lease ended); "
        "token_mismatch (held under another token)"
    )
    held_by: str | None = Field(description="the current holder when the token did not match")


class LockRenewResult(_Result):
    resource: str
    renewed: bool
    reason: RenewReason = Field(
        description="renewed; not_held (the lease ended: acquire again); token_mismatch (held by another)"
    )
    held_by: str | None = Field(description="the holder (the caller when renewed)")
    fencing: int | None = Field(description="the lock's fencing number when renewed")
    expires_in: float | None = Field(description="seconds left on the holder's lease (ms precision)")


class LockInfo(_Result):
    resource: str
    held_by: str
    fencing: int | None
    expires_in: float | None = Field(description="seconds left on the lease; null if it has no expiry")


class LockListResult(_Result):
    locks: list[LockInfo]
    truncated: bool = Field(default=False, description=f"more than {LIST_MAX} locks are held")


CleanupAction = Literal["released", "missing", "reindexed"]


class LockCleanup(_Result):
    resource: str
    action: CleanupAction = Field(
        description="released (its holder is gone); missing (no lock behind the index entry: "
        "entry removed); reindexed (the entry now says when the lease really ends)"
    )
    holder: str | None = Field(description="the gone holder, for a released lock")


class LockCleanupBatch(_Result):
    actions: list[LockCleanup]
    next_offset: int | None = Field(description="where the next step starts; null: done")


class LockSummary(_Result):
    held: int = Field(description="locks whose lease has not ended, by the index")
    locks: list[LockInfo] = Field(description="the first few, soonest lease end first")


# --- Pure rules -------------------------------------------------------------------------------


def check_resource(resource: str) -> str:
    """A resource is any printable text of 1-512 bytes, e.g. ``src/app.py`` or ``db:migrations``."""
    if not resource:
        raise InvalidArgumentError("argument 'resource' must not be empty")
    if not resource.isprintable():
        raise InvalidArgumentError(
            "argument 'resource' must be printable text (no control characters, newlines or tabs)"
        )
    size = len(resource.encode("utf-8", "surrogatepass"))
    if size > MAX_RESOURCE_BYTES:
        raise LimitExceededError(f"argument 'resource' is {size} bytes; the limit is {MAX_RESOURCE_BYTES}")
    return resource


def check_ttl(ttl_s: int, settings: LockSettings, argument: str = "ttl") -> int:
    """The configured ceiling; the floor (at least 1 s) is the tool's argument model's."""
    if ttl_s > settings.max_ttl_s:
        raise LimitExceededError(
            f"argument {argument!r} is {ttl_s} s; the limit is locks.max_ttl_s = {settings.max_ttl_s}"
        )
    return ttl_s


def check_wait(wait_ms: int, settings: LockSettings) -> int:
    """The configured ceiling; the floor (0 ms) is the tool's argument model's."""
    if wait_ms > settings.max_wait_ms:
        raise LimitExceededError(
            f"argument 'wait_ms' is {wait_ms} ms; the limit is locks.max_wait_ms = {settings.max_wait_ms}"
        )
    return wait_ms


def check_token(token: str) -> str:
    if not token:
        raise InvalidArgumentError("argument 'token' must not be empty (use the token lock_acquire returned)")
    if len(token) > MAX_TOKEN_CHARS:
        raise InvalidArgumentError(
            f"argument 'token' is {len(token)} characters; tokens from lock_acquire are 32"
        )
    return token


def backoff_delay(
    attempt: int, jitter: float, *, deadline_left_s: float, holder_left_s: float | None
) -> float:
    """Seconds to wait before retry ``attempt`` (0-based); ``jitter`` is uniform in [0, 1).

    Exponential from :data:`BACKOFF_BASE_S`, capped at :data:`BACKOFF_CAP_S`, scaled into
    [50 %, 100 %) so that waiters spread out; never past the caller's deadline, nor past the
    moment the holder's lease ends (the lock is free then, whoever else is polling).
    """
    delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2.0 ** min(attempt, 30)) * (0.5 + jitter / 2)
    delay = min(delay, deadline_left_s)
    if holder_left_s is not None:
        delay = min(delay, holder_left_s)
    return max(delay, 0.0)


def lease_seconds(pttl_ms: int) -> float | None:
    """A PTTL reply as seconds; ``None`` for a key without expiry (only raw writes make one)."""
    return None if pttl_ms < 0 else pttl_ms / 1000


def _doc_and_pttl(batch: Batch, key: str) -> tuple[Reply[str | None], Reply[int]]:
    """A lock's document and remaining lease, queued on ``batch``."""
    return batch.get(key), batch.pttl(key)


_AGENT_FIELD = re.compile(r'"agent":"((?:[^"\\]|\\.)*)"')


def _holder_fast(raw: str) -> str:
    """The holder named in a lock document, read without parsing all of it: the lock walks
    read every document of a project, and a full parse costs three times as much. Only a
    first filter: the script decides on the parsed document."""
    match = _AGENT_FIELD.search(raw)
    if match is None:
        return _holder_of(raw)[0]
    text = match.group(1)
    return text if "\\" not in text else str(json.loads(f'"{text}"'))


def _holder_of(raw: str) -> tuple[str, int | None]:
    try:
        doc = json.loads(raw)
    except ValueError:
        return UNKNOWN_HOLDER, None
    if not isinstance(doc, dict) or not isinstance(doc.get("agent"), str):
        return UNKNOWN_HOLDER, None
    fencing = doc.get("fencing")
    return doc["agent"], fencing if isinstance(fencing, int) and not isinstance(fencing, bool) else None


# --- Local wake-ups ---------------------------------------------------------------------------


class _Wakeups:
    """Waiters on a resource in this process, oldest first. A release through this service
    wakes one of them (the others keep polling): waking all would make every waiter spend a
    round trip on a lock only one can take.
    """

    def __init__(self) -> None:
        self._queues: dict[tuple[str, str], deque[anyio.Event]] = {}

    async def wait(self, key: tuple[str, str], timeout_s: float) -> None:
        event = anyio.Event()
        queue = self._queues.setdefault(key, deque())
        queue.append(event)
        try:
            with anyio.move_on_after(timeout_s):
                await event.wait()
        finally:
            if not event.is_set():
                queue.remove(event)
            if not queue and self._queues.get(key) is queue:
                del self._queues[key]

    def count(self, key: tuple[str, str]) -> int:
        return len(self._queues.get(key, ()))

    def notify(self, key: tuple[str, str]) -> None:
        queue = self._queues.get(key)
        if queue:
            queue.popleft().set()
            if not queue:
                del self._queues[key]


# --- The service ------------------------------------------------------------------------------


class LockService:
    """``clock`` is accepted like every service's, but lock times come from the server's clock."""

    def __init__(self, store: Store, settings: LockSettings, clock: Clock = system_clock) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self._acquire = store.script(_ACQUIRE)
        self._release = store.script(_RELEASE)
        self._renew = store.script(_RENEW)
        # Reads, and drops index entries long past their lease: dropping them again drops nothing.
        self._list = store.script(_LIST, exactly_once=False)
        self._reap = store.script(_REAP)
        self._release_gone = store.script(_RELEASE_GONE)
        self._summary = store.script(_SUMMARY, exactly_once=False)  # reads only
        self._wakeups = _Wakeups()

    @property
    def settings(self) -> LockSettings:
        return self._settings

    def local_waiters(self, ns: Namespace, resource: str) -> int:
        """How many acquire calls in this process are sleeping between attempts on ``resource``."""
        return self._wakeups.count((ns.project_id, resource))

    async def acquire(
        self, ns: Namespace, agent: str, resource: str, ttl_s: int | None = None, wait_ms: int = 0
    ) -> LockAcquireResult:
        """Take the lock for ``agent``, waiting up to ``wait_ms`` for the holder to let go."""
        check_resource(resource)
        lease_ms = check_ttl(self._settings.default_ttl_s if ttl_s is None else ttl_s, self._settings) * 1000
        check_wait(wait_ms, self._settings)
        # One token for every attempt of this call: a reply lost to a timeout is recovered by
        # re-entry, which hands the same token back.
        token = secrets.token_hex(16)
        deadline = anyio.current_time() + wait_ms / 1000
        attempt = 0
        while True:
            result = await self._try_acquire(ns, agent, resource, token, lease_ms)
            left = deadline - anyio.current_time()
            if result.acquired or left <= 0:
                return result
            # Jitter only spreads retries; it needs no unpredictability.
            jitter = random.random()  # noqa: S311
            delay = backoff_delay(attempt, jitter, deadline_left_s=left, holder_left_s=result.expires_in)
            await self._wakeups.wait((ns.project_id, resource), delay)
            attempt += 1

    async def _try_acquire(
        self, ns: Namespace, agent: str, resource: str, token: str, lease_ms: int
    ) -> LockAcquireResult:
        keys = [
            ns.key(lock_key(resource)),
            ns.key(LOCKS_INDEX),
            ns.key(FENCING_COUNTER),
            ns.key(agent_locks_key(agent)),
        ]
        args: list[str | int] = [resource, agent, token, lease_ms, FENCING_COUNTER_TTL_S, INDEX_GRACE_MS]
        acquired, held_token, fencing, holder, pttl, reentered = await self._acquire(keys, args)
        if not acquired:
            return LockAcquireResult(
                acquired=False, token=None, fencing=None, held_by=holder, expires_in=lease_seconds(pttl)
            )
        return LockAcquireResult(
            acquired=True,
            token=held_token,
            fencing=int(fencing),
            held_by=holder,
            expires_in=lease_seconds(pttl),
            reentered=bool(reentered),
        )

    async def release(self, ns: Namespace, resource: str, token: str) -> LockReleaseResult:
        """Free the lock if ``token`` holds it."""
        check_resource(resource)
        check_token(token)
        keys = [ns.key(lock_key(resource)), ns.key(LOCKS_INDEX)]
        released, reason, holder, _pttl = await self._release(
            keys, [token, resource, ns.key(AGENT_LOCKS_PREFIX)]
        )
        if released:
            self._wakeups.notify((ns.project_id, resource))
        return LockReleaseResult(
            resource=resource,
            released=bool(released),
            reason=reason,
            held_by=holder if reason == "token_mismatch" else None,
        )

    async def renew(self, ns: Namespace, resource: str, token: str, ttl_s: int) -> LockRenewResult:
        """Make the lease of the lock ``token`` holds end ``ttl_s`` from now (it may shorten it)."""
        check_resource(resource)
        check_token(token)
        lease_ms = check_ttl(ttl_s, self._settings) * 1000
        keys = [ns.key(lock_key(resource)), ns.key(LOCKS_INDEX)]
        renewed, reason, holder, pttl, fencing = await self._renew(
            keys, [token, resource, lease_ms, ns.key(AGENT_LOCKS_PREFIX)]
        )
        return LockRenewResult(
            resource=resource,
            renewed=bool(renewed),
            reason=reason,
            held_by=holder or None,
            fencing=int(fencing) if renewed else None,
            expires_in=lease_seconds(pttl),
        )

    async def list(self, ns: Namespace) -> LockListResult:
        """Held locks, from the index and one pipelined read of their documents."""
        resources: list[str] = await self._list([ns.key(LOCKS_INDEX)], [LIST_MAX + 1, INDEX_GRACE_MS])
        truncated = len(resources) > LIST_MAX
        resources = sorted(resources[:LIST_MAX])
        if not resources:
            return LockListResult(locks=[], truncated=truncated)
        batch = Batch()
        reads = [(resource, *_doc_and_pttl(batch, ns.key(lock_key(resource)))) for resource in resources]
        await self._store.run(batch)
        locks: list[LockInfo] = []
        for resource, doc, lease in reads:
            raw, pttl = doc.value, lease.value
            if raw is None:
                # Released or lapsed since the index was read (or deleted by a raw tool).
                continue
            holder, fencing = _holder_of(raw)
            locks.append(
                LockInfo(resource=resource, held_by=holder, fencing=fencing, expires_in=lease_seconds(pttl))
            )
        return LockListResult(locks=locks, truncated=truncated)

    # --- Clean-up (the heartbeat sweep and the lock reaper) and the status summary ------------

    async def gone_holders(self, ns: Namespace) -> frozenset[str]:
        """Agents the heartbeat sweep found gone whose locks have not been walked yet."""
        return frozenset(await self._store.zrange(ns.key(AGENTS_GONE), 0, -1))

    async def forget_gone(self, ns: Namespace, agents: Collection[str]) -> None:
        """The locks of these gone agents have all been walked: take them off the gone index."""
        names = sorted(agents)
        batch = Batch()  # ZREM: idempotent, so a resend of the pipeline changes nothing
        for i in range(0, len(names), 1_000):
            batch.zrem(ns.key(AGENTS_GONE), names[i : i + 1_000])
        await self._store.run(batch)

    async def release_locks_of_gone(self, ns: Namespace, agents: Collection[str]) -> Sequence[LockCleanup]:
        """Release the locks ``agents`` (found gone by the heartbeat sweep, see
        :meth:`gone_holders`) took before they were found gone, found through each agent's set
        of held resources: the sweep's work grows with the gone agents' locks, not with every
        lock of the project. One script call: pass at most :data:`GONE_AGENTS_PER_CALL` agents."""
        if len(agents) > GONE_AGENTS_PER_CALL:
            raise ValueError(f"{len(agents)} agents in one call; at most {GONE_AGENTS_PER_CALL}")
        if not agents:
            return []
        names = sorted(agents)
        keys = [ns.key(LOCKS_INDEX), ns.key(AGENTS_GONE), *ns.keys(agent_locks_key(a) for a in names)]
        reply = await self._release_gone(keys, [ns.key(lock_key("")), *names])
        return [
            LockCleanup(resource=str(reply[i]), action="released", holder=str(reply[i + 1]))
            for i in range(0, len(reply), 2)
        ]

    async def reap(
        self, ns: Namespace, offset: int = 0, limit: int = 1_000, gone: Collection[str] = ()
    ) -> LockCleanupBatch:
        """One step of the lock reaper over up to ``limit`` index entries from ``offset``: drop
        entries whose lock is gone (lease ended, or deleted), re-score entries whose lock
        outlives them, and release the locks of ``gone`` holders (those a cut-short sweep left
        on the gone index) as :meth:`release_locks_of_gone` does. Pass ``next_offset`` on until
        it is ``None``."""
        # The walk reads outside any script, and only the entries that may need a change go to
        # lock_reap.lua, which decides again on what it finds: in the usual batch (every lock
        # alive, no gone holder) the server does one EXISTS over the batch and nothing else.
        index = ns.key(LOCKS_INDEX)
        batch = Batch()
        page = batch.zrange_with_scores(index, offset, offset + limit - 1)
        clock = batch.time()
        await self._store.run(batch)
        entries = page.value
        if not entries:
            return LockCleanupBatch(actions=[], next_offset=None)
        seconds, micros = clock.value
        now_ms = seconds * 1000 + micros // 1000
        keys = ns.keys([lock_key(resource) for resource, _ in entries])
        selected: list[str] = []
        if gone:
            docs = await self._store.mget(keys)
            for key, (_, score), raw in zip(keys, entries, docs, strict=True):
                if raw is None or _holder_fast(raw) in gone or score < now_ms:
                    selected.append(key)
        else:
            alive = await self._store.exists(keys)
            if alive < len(keys):
                selected = keys  # some lock is missing: the script finds which
            else:
                selected = [key for key, (_, score) in zip(keys, entries, strict=True) if score < now_ms]
        removed, actions = 0, []
        if selected:
            reply = await self._reap(
                [index, ns.key(AGENTS_GONE), *selected],
                [len(ns.key(lock_key(""))), ns.key(AGENT_LOCKS_PREFIX)],
            )
            removed = int(reply[0])
            actions = [
                LockCleanup(resource=str(reply[i]), action=reply[i + 1], holder=str(reply[i + 2]) or None)
                for i in range(1, len(reply), 3)
            ]
        done = len(entries) < limit
        return LockCleanupBatch(
            actions=actions, next_offset=None if done else offset + len(entries) - removed
        )

    async def summary(self, ns: Namespace, limit: int = 20) -> LockSummary:
        """How many locks are held, and the first ``limit`` of them (for ``coordinatord status``)."""
        reply = await self._summary([ns.key(LOCKS_INDEX)], [limit])
        held, resources = int(reply[0]), [str(r) for r in reply[1:]]
        if not resources:
            return LockSummary(held=held, locks=[])
        batch = Batch()
        reads = [(resource, *_doc_and_pttl(batch, ns.key(lock_key(resource)))) for resource in resources]
        await self._store.run(batch)
        locks: list[LockInfo] = []
        for resource, doc, lease in reads:
            raw, pttl = doc.value, lease.value
            if raw is not None:
                holder, fencing = _holder_of(raw)
                locks.append(
                    LockInfo(
                        resource=resource, held_by=holder, fencing=fencing, expires_in=lease_seconds(pttl)
                    )
                )
        return LockSummary(held=held, locks=locks)
