"""Placeholder: being written."""

from __future__ import annotations

from coordinatord.settings import RateLimitSettings
from coordinatord.store import Store


class RateLimitService:
    def __init__(self, store: Store, settings: RateLimitSettings) -> None:
        self._store = store
        self._settings = settings
