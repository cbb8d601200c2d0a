"""Single commands on connections of their own: the hot path of every tool call on one server.

redis-py's ``execute_command`` wraps each command in layers that the daemon pays for on every
call and does not need: the blocking pool's condition lock and its own timeout, a health check
of the connection as it is handed out, ``asyncio.wait_for`` (a new task) around the write, a
timeout around the read, the retry wrapper, and observability hooks. A call here is already
bounded once, by the store's ``backend.timeout_s`` (:func:`coordinatord.store.bounded.bounded_call`).

:class:`DirectConnections` keeps idle connections of a pool of its own (same URL, password,
database and TLS as the store's client, but no socket timeout: the store's bound covers the
whole call) and runs one command on one of them: write the packed command, read one reply.
A connection goes back to the idle list only after a complete request and reply; after any
other outcome (a timeout, a cancellation, a dead socket) it is disconnected and left, so no
reply is ever read by the wrong call. A connection error leaves the command to the caller's
full path, which reconnects and retries as configured (``backend.retries``).

At most ``limit`` connections are opened here; when all are busy, the caller takes the full
path, whose blocking pool queues it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import ConnectionPool
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ResponseError

from coordinatord.store.interface import Arg


class DirectConnections:
    def __init__(self, pool: ConnectionPool, limit: int) -> None:
        self._pool = pool
        self._limit = limit
        self._idle: list[AbstractConnection] = []
        self._opened = 0

    async def execute(self, command: Sequence[Arg]) -> tuple[bool, Any]:
        """``(True, raw reply)``, or ``(False, None)`` when no connection is free here (the
        caller then takes the full path). An error reply raises its ResponseError, as redis-py
        does; a broken connection raises redis-py's ConnectionError."""
        if self._idle:
            connection = self._idle.pop()
        elif self._opened < self._limit:
            self._opened += 1
            try:
                connection = await self._pool.get_connection()  # type: ignore[no-untyped-call]
            except BaseException:
                self._opened -= 1
                raise
        else:
            return False, None
        try:
            await connection.send_packed_command(connection.pack_command(*command), check_health=False)
            raw = await connection.read_response()
        except ResponseError:
            self._idle.append(connection)  # a whole reply was read: the connection is in step
            raise
        except BaseException:
            await self._drop(connection)
            raise
        self._idle.append(connection)
        return True, raw

    async def _drop(self, connection: AbstractConnection) -> None:
        self._opened -= 1
        # Disconnect without waiting for the peer: this may run while the call is cancelled.
        await connection.disconnect(nowait=True)
        await self._pool.release(connection)

    async def aclose(self) -> None:
        self._idle.clear()
        await self._pool.aclose()
