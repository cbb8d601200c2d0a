"""Placeholder: being written."""

from __future__ import annotations

from coordinatord.clock import Clock, system_clock
from coordinatord.presence import Presence
from coordinatord.settings import AgentSettings
from coordinatord.store import Store


class AgentService:
    def __init__(
        self, store: Store, settings: AgentSettings, presence: Presence, clock: Clock = system_clock
    ) -> None:
        self._store = store
        self._settings = settings
        self._presence = presence
        self._clock = clock
