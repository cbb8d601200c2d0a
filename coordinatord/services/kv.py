"""Raw key/value access inside one project's namespace: what the seed's eight tools do.

Keys arrive and leave without the namespace prefix; every write gets a TTL (the caller's,
checked against the ceiling, or the policy's default for the key's class). The services' own
keys (``keyspace.is_internal_key``) can be read here but not written, expired or deleted.
"""

from __future__ import annotations

from coordinatord.keyspace import KeyRules, Namespace, TtlPolicy, check_not_internal, is_write_record
from coordinatord.services.secret_guard import SecretGuard
from coordinatord.services.shared import lua
from coordinatord.store import Store


class KvService:
    def __init__(
        self,
        store: Store,
        rules: KeyRules,
        ttl: TtlPolicy,
        keys_result_max: int,
        guard: SecretGuard | None = None,
    ) -> None:
        self._store = store
        self._guard = guard or SecretGuard()
        self._rules = rules
        self._ttl = ttl
        self._keys_result_max = keys_result_max
        self._delete = store.script(lua("kv_delete"))

    @property
    def keys_result_max(self) -> int:
        return self._keys_result_max

    async def get(self, ns: Namespace, key: str) -> str | None:
        return await self._store.get(ns.key(self._rules.check_key(key)))

    async def set(self, ns: Namespace, key: str, value: str, ttl_s: int | None) -> int:
        """Store ``value``; returns the TTL applied."""
        check_not_internal(self._rules.check_key(key))
        self._rules.check_value(value)
        value = self._guard.text(value, "value")  # raw text: offsets are the argument's own
        seconds = self._ttl.ttl_for(key) if ttl_s is None else self._ttl.check_requested(ttl_s)
        # SET of a value: a resend after a lost reply writes the same value and TTL again.
        await self._store.set(ns.key(key), value, seconds)
        return seconds

    async def delete(self, ns: Namespace, keys: list[str]) -> int:
        self._rules.check_keys(keys)
        # Every key is checked before any is deleted: a refused call deletes nothing.
        for index, key in enumerate(keys):
            check_not_internal(key, f"keys[{index}]")
        if not keys:
            return 0
        # A script, not DEL: exactly-once, so a resend after a lost reply still answers the
        # count the first application deleted (SET and EXPIRE answer alike when resent).
        return int(await self._delete(ns.keys(keys), []))

    async def exists(self, ns: Namespace, keys: list[str]) -> int:
        return await self._store.exists(ns.keys(self._rules.check_keys(keys)))

    async def ttl(self, ns: Namespace, key: str) -> int:
        return await self._store.ttl(ns.key(self._rules.check_key(key)))

    async def expire(self, ns: Namespace, key: str, seconds: int) -> bool:
        check_not_internal(self._rules.check_key(key))
        return await self._store.expire(ns.key(key), self._ttl.check_requested(seconds, "seconds"))

    async def keys(self, ns: Namespace, pattern: str) -> tuple[list[str], bool]:
        """Keys matching ``pattern`` (without the prefix), sorted, and whether the list was cut."""
        self._rules.check_key(pattern, "pattern")
        found, truncated = await self._store.scan(ns.pattern(pattern), self._keys_result_max)
        # Defence in depth: whatever SCAN returned, only this namespace's keys leave.
        # Write records (_once:*) are the daemon's transport state, not the project's: not listed.
        keys = sorted(
            k for k in (ns.local_key(full) for full in found) if k is not None and not is_write_record(k)
        )
        return keys, truncated

    async def ping(self) -> bool:
        return await self._store.ping()
