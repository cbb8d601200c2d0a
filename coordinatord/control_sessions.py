"""Placeholder: operator commands for sessions (``coordinatord sessions …``, ``archive``)."""

from __future__ import annotations

from coordinatord.app import App, ControlHandler
from coordinatord.jobs import Jobs


def handlers(app: App, jobs: Jobs) -> dict[str, ControlHandler]:
    return {}
