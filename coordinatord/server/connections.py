"""The connections open now: how many (the cap counts those still at their first line), and
the relays of those being served, which ``status`` describes and a shutdown stops.

Its own object, made before the server and the control commands, so that both can be given it
at construction (the control commands describe the connections the server serves).
"""

from __future__ import annotations

from typing import Any

import anyio

from coordinatord.server.relay import Relay


class OpenConnections:
    def __init__(self) -> None:
        self.count = 0
        self._relays: set[Relay] = set()
        self._all_closed = anyio.Event()
        self._all_closed.set()

    def opened(self) -> None:
        if self.count == 0:
            self._all_closed = anyio.Event()
        self.count += 1

    def closed(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._all_closed.set()

    def serving(self, relay: Relay) -> None:
        self._relays.add(relay)

    def done(self, relay: Relay) -> None:
        self._relays.discard(relay)

    def describe(self) -> list[dict[str, Any]]:
        """The open MCP connections: who and which project (for ``coordinatord status``)."""
        return [relay.describe() for relay in sorted(self._relays, key=lambda r: r.peer.conn_id)]

    async def close_all(self) -> None:
        """Stop reading on every connection and wait until each has sent its last reply and
        closed. Call after the in-flight calls have drained; bound it with a timeout."""
        for relay in list(self._relays):
            relay.stop_reading()
        await self._all_closed.wait()
