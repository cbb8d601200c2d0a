"""Placeholder: being written."""

from __future__ import annotations

from coordinatord.clock import Clock, system_clock
from coordinatord.settings import TaskSettings
from coordinatord.store import Store


class TaskService:
    def __init__(self, store: Store, settings: TaskSettings, clock: Clock = system_clock) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
