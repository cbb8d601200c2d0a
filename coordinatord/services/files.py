"""File reservations: an agent says which paths (globs) it is about to change, exclusively or
shared, for a lease; others see it, and conflicting reservations are refused.

Key layout, inside the project namespace: ``_idx:files``, a hash of reservation id → document
(:data:`coordinatord.keyspace.FILE_RESERVATIONS`), and the locks' fencing counter, so that a
reservation's fencing number orders it with every lock of the project as well.

Atomicity: reserve, release, renew and the sweep's release are one Lua script each
(``lua/files_*.lua``, after the fragment ``files_common.lua``). The reserve script reads every
live reservation of the project and decides overlaps itself, with the same algorithm as
:mod:`coordinatord.pathglob` (a test pins both to the same answers): a check in Python followed
by a write would let two agents both pass the check. Times are the server's (``TIME``).

Rules: an exclusive reservation conflicts with every overlapping reservation of another agent;
a shared one only with exclusive ones. An agent's own reservations never conflict with each
other. A reservation is held by its agent: release and renew act only for it (the connection's
identity), so the ids ``files_list`` shows are no capability. Lapsed reservations are never
returned as live: every read filters on the server's clock, and every write removes those it
meets. A refused reservation, release or renew is a result, not an error.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Collection, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from coordinatord import pathglob
from coordinatord.errors import InvalidArgumentError, LimitExceededError
from coordinatord.keyspace import AGENTS_GONE, FENCING_COUNTER, FILE_RESERVATIONS, Namespace
from coordinatord.services.secret_guard import SecretGuard
from coordinatord.services.shared import lua
from coordinatord.settings import FileSettings
from coordinatord.store import Batch, Store

FENCING_COUNTER_TTL_S = 30 * 86_400  # the locks' (services/locks.py): one counter
MAX_REASON_BYTES = 500
MAX_ID_CHARS = 64
LIST_MAX = 1_000

Mode = Literal["exclusive", "shared"]

_RESERVE, _RELEASE, _RENEW, _LAPSED, _RELEASE_GONE = (
    lua(f"files_{name}", after="files_common")
    for name in ("reserve", "release", "renew", "lapsed", "release_gone")
)


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True)


class FileHold(_Result):
    id: str
    agent: str
    mode: Mode
    paths: list[str]
    reason: str
    fencing: int
    expires_in: float = Field(description="seconds left on the lease (ms precision)")


class FilesReserveResult(_Result):
    reserved: bool
    id: str | None = Field(description="pass to files_release / files_renew; null when refused")
    fencing: int | None = Field(description="rises with every reservation or lock of the project")
    paths: list[str] = Field(description="the globs as stored (normalized)")
    expires_in: float | None = Field(description="seconds left on the lease; null when refused")
    conflicts: list[FileHold] = Field(description="other agents' reservations in the way")


ReleaseReason = Literal["released", "not_held", "not_yours"]
RenewReason = Literal["renewed", "not_held", "not_yours"]


class FilesReleaseResult(_Result):
    id: str
    released: bool
    reason: ReleaseReason = Field(
        description="released; not_held (released already, or lapsed); not_yours (another agent's)"
    )
    paths: list[str] = Field(description="what was released")


class FilesRenewResult(_Result):
    id: str
    renewed: bool
    reason: RenewReason = Field(description="renewed; not_held (lapsed: reserve again); not_yours")
    fencing: int | None
    expires_in: float | None = Field(description="seconds left on the lease when renewed")


class FileOverlap(FileHold):
    overlaps: list[str] = Field(description="which of the given paths it overlaps")


class FilesCheckResult(_Result):
    holds: list[FileOverlap] = Field(description="live reservations overlapping the paths, soonest end first")


class FilesListResult(_Result):
    reservations: list[FileHold] = Field(description="every live reservation, soonest end first")
    truncated: bool = Field(default=False, description=f"more than {LIST_MAX} are live")


class GoneRelease(_Result):
    id: str
    agent: str
    paths: list[str]


# --- Pure rules -------------------------------------------------------------------------------


def check_paths(paths: Sequence[str], settings: FileSettings, argument: str = "paths") -> list[str]:
    """The globs normalized (duplicates dropped, order kept), or an error naming the item."""
    if not paths:
        raise InvalidArgumentError(f"argument {argument!r} must name at least one path or glob")
    if len(paths) > settings.max_paths:
        raise LimitExceededError(
            f"argument {argument!r} has {len(paths)} paths; "
            f"the limit is files.max_paths = {settings.max_paths}"
        )
    out: list[str] = []
    for index, raw in enumerate(paths):
        try:
            normalized = pathglob.normalize(raw)
        except pathglob.GlobError as exc:
            raise InvalidArgumentError(f"argument '{argument}[{index}]' {exc}: {raw[:80]!r}") from None
        if normalized not in out:
            out.append(normalized)
    return out


def check_ttl(ttl_s: int, settings: FileSettings) -> int:
    if ttl_s > settings.max_ttl_s:
        raise LimitExceededError(
            f"argument 'ttl_s' is {ttl_s} s; the limit is files.max_ttl_s = {settings.max_ttl_s}"
        )
    return ttl_s


def check_reason(reason: str) -> str:
    if not reason.isprintable():
        raise InvalidArgumentError("argument 'reason' must be printable text (no control characters)")
    size = len(reason.encode("utf-8", "surrogatepass"))
    if size > MAX_REASON_BYTES:
        raise LimitExceededError(f"argument 'reason' is {size} bytes; the limit is {MAX_REASON_BYTES}")
    return reason


def check_id(reservation_id: str) -> str:
    if not reservation_id or len(reservation_id) > MAX_ID_CHARS:
        raise InvalidArgumentError("argument 'id' must be the id files_reserve returned (32 hex digits)")
    return reservation_id


def _hold(doc: dict[str, Any], left_ms: float) -> FileHold:
    return FileHold(
        id=str(doc.get("id", "")),
        agent=str(doc.get("agent", "")),
        mode="shared" if doc.get("mode") == "shared" else "exclusive",
        paths=[str(p) for p in doc.get("paths") or []],
        reason=str(doc.get("reason") or ""),
        fencing=int(doc.get("fencing") or 0),
        expires_in=max(left_ms, 0) / 1000,
    )


def _decode(raw: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


class FileService:
    def __init__(self, store: Store, settings: FileSettings, guard: SecretGuard | None = None) -> None:
        self._store = store
        self._guard = guard or SecretGuard()
        self._settings = settings
        self._reserve = store.script(_RESERVE)
        self._release = store.script(_RELEASE)
        self._renew = store.script(_RENEW)
        self._lapsed = store.script(_LAPSED, exactly_once=False)  # reads only
        self._release_gone = store.script(_RELEASE_GONE)

    @property
    def settings(self) -> FileSettings:
        return self._settings

    async def reserve(
        self,
        ns: Namespace,
        agent: str,
        paths: Sequence[str],
        mode: Mode = "exclusive",
        ttl_s: int | None = None,
        reason: str = "",
    ) -> FilesReserveResult:
        """Reserve ``paths`` for ``agent`` unless another agent's reservation is in the way."""
        globs = check_paths(paths, self._settings)
        lease_ms = check_ttl(self._settings.default_ttl_s if ttl_s is None else ttl_s, self._settings) * 1000
        reason = self._guard.text(reason, "reason")  # before the size check: a secret is named as one
        check_reason(reason)
        reservation_id = secrets.token_hex(16)
        keys = [ns.key(FILE_RESERVATIONS), ns.key(FENCING_COUNTER)]
        args: list[str | int] = [
            reservation_id,
            agent,
            mode,
            lease_ms,
            reason,
            FENCING_COUNTER_TTL_S,
            self._settings.max_live,
            *globs,
        ]
        reply = await self._reserve(keys, args)
        status = int(reply[0])
        if status == 1:
            return FilesReserveResult(
                reserved=True,
                id=reservation_id,
                fencing=int(reply[1]),
                paths=globs,
                expires_in=int(reply[2]) / 1000,
                conflicts=[],
            )
        if status == 2:
            raise LimitExceededError(
                f"the project holds {reply[1]} live file reservations; the limit is "
                f"files.max_live = {self._settings.max_live} (release some first)"
            )
        conflicts = []
        for k in range(1, len(reply), 2):
            doc = _decode(str(reply[k]))
            if doc is not None:
                conflicts.append(_hold(doc, int(reply[k + 1])))
        conflicts.sort(key=lambda hold: (hold.expires_in, hold.id))
        return FilesReserveResult(
            reserved=False, id=None, fencing=None, paths=globs, expires_in=None, conflicts=conflicts
        )

    async def release(self, ns: Namespace, agent: str, reservation_id: str) -> FilesReleaseResult:
        """Free the reservation if ``agent`` holds it."""
        check_id(reservation_id)
        released, reason, detail = await self._release([ns.key(FILE_RESERVATIONS)], [reservation_id, agent])
        doc = _decode(str(detail)) if released else None
        return FilesReleaseResult(
            id=reservation_id,
            released=bool(released),
            reason=reason,
            paths=[str(p) for p in (doc or {}).get("paths") or []],
        )

    async def renew(self, ns: Namespace, agent: str, reservation_id: str, ttl_s: int) -> FilesRenewResult:
        """Make the lease of ``agent``'s reservation end ``ttl_s`` from now (it may shorten it)."""
        check_id(reservation_id)
        lease_ms = check_ttl(ttl_s, self._settings) * 1000
        renewed, reason, detail = await self._renew(
            [ns.key(FILE_RESERVATIONS)], [reservation_id, agent, lease_ms]
        )
        doc = _decode(str(detail)) if renewed else None
        return FilesRenewResult(
            id=reservation_id,
            renewed=bool(renewed),
            reason=reason,
            fencing=int(doc.get("fencing") or 0) if doc else None,
            expires_in=lease_ms / 1000 if renewed else None,
        )

    async def _live(self, ns: Namespace) -> list[FileHold]:
        """Every live reservation, by the server's clock, soonest end first (one round trip)."""
        batch = Batch()
        everything = batch.raw("HGETALL", ns.key(FILE_RESERVATIONS))
        clock = batch.time()
        await self._store.run(batch)
        seconds, micros = clock.value
        now_ms = seconds * 1000 + micros // 1000
        flat = everything.value or []
        holds = []
        for k in range(1, len(flat), 2):
            raw = flat[k]
            doc = _decode(raw.decode() if isinstance(raw, bytes) else str(raw))
            if doc is None:
                continue
            left = int(doc.get("expires_at_ms") or 0) - now_ms
            if left > 0:
                holds.append(_hold(doc, left))
        holds.sort(key=lambda hold: (hold.expires_in, hold.id))
        return holds

    async def reservations(self, ns: Namespace) -> FilesListResult:
        holds = await self._live(ns)
        return FilesListResult(reservations=holds[:LIST_MAX], truncated=len(holds) > LIST_MAX)

    async def check(self, ns: Namespace, paths: Sequence[str]) -> FilesCheckResult:
        """The live reservations (anyone's) that overlap ``paths``, and which of them each overlaps."""
        globs = check_paths(paths, self._settings)
        return FilesCheckResult(holds=self._overlapping(await self._live(ns), globs))

    @staticmethod
    def _overlapping(holds: Sequence[FileHold], globs: Sequence[str]) -> list[FileOverlap]:
        out = []
        for hold in holds:
            hits = [g for g in globs if any(pathglob.overlaps(g, theirs) for theirs in hold.paths)]
            if hits:
                out.append(FileOverlap(**hold.model_dump(), overlaps=hits))
        return out

    async def blocking_commit(
        self, ns: Namespace, staged: Sequence[str], agent: str | None
    ) -> list[FileOverlap]:
        """The exclusive reservations of agents other than ``agent`` (of anyone, when ``None``)
        covering any of the ``staged`` paths (literal, as git names them): what the pre-commit
        hook refuses. Paths that are no valid glob once escaped (control characters) are skipped."""
        spelt: dict[str, str] = {}  # escaped glob -> the path as git spelt it
        for path in staged:
            try:
                spelt.setdefault(pathglob.normalize(pathglob.escape(path)), path)
            except pathglob.GlobError:
                continue
        if not spelt:
            return []
        holds = [h for h in await self._live(ns) if h.mode == "exclusive" and h.agent != agent]
        return [
            h.model_copy(update={"overlaps": [spelt[p] for p in h.overlaps]})
            for h in self._overlapping(holds, list(spelt))
        ]

    async def left_ms(self, ns: Namespace, ids: Sequence[str]) -> dict[str, int]:
        """Milliseconds left on each reservation (0: lapsed or released), by the server's clock."""
        reply = await self._lapsed([ns.key(FILE_RESERVATIONS)], list(ids))
        return {reservation_id: int(left) for reservation_id, left in zip(ids, reply, strict=True)}

    async def release_of_gone(self, ns: Namespace, agents: Collection[str]) -> list[GoneRelease]:
        """Release the reservations the gone ``agents`` (the heartbeat sweep's, on the gone
        index) took before they were found gone; one script walking the project's reservations."""
        if not agents:
            return []
        reply = await self._release_gone([ns.key(FILE_RESERVATIONS), ns.key(AGENTS_GONE)], sorted(agents))
        return [
            GoneRelease(id=str(reply[k]), agent=str(reply[k + 1]), paths=list(json.loads(reply[k + 2])))
            for k in range(0, len(reply), 3)
        ]
