"""The ``shutdown`` control command (``coordinatord stop``)."""

from __future__ import annotations

import os
from typing import Any

import anyio

from coordinatord.control.registry import ControlHandler


def shutdown_handler(shutdown: anyio.Event, service: dict[str, Any]) -> ControlHandler:
    """The reply goes out first (the shutdown waits for every connection, this one included, to
    close), then the daemon stops as on SIGTERM: setting ``shutdown`` is all this does."""

    async def handler(args: dict[str, Any]) -> dict[str, Any]:
        shutdown.set()
        return {"pid": os.getpid(), **service}

    return handler
