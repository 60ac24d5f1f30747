"""Feature toggles, stored in Postgres and read through a short per-process cache."""

from __future__ import annotations

import threading
import time

from sqlalchemy.orm import Session

from app.repositories.features import FeatureRepository

CHECKOUT = "checkout"


class FeatureCache:
    """At most ``ttl`` seconds stale in any process; one query refreshes every toggle."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, bool] = {}
        self._loaded_at = float("-inf")

    def is_enabled(self, session: Session, name: str, ttl: float, default: bool = True) -> bool:
        now = time.monotonic()
        with self._lock:
            fresh = now - self._loaded_at < ttl
            values = self._values
        if not fresh:
            values = FeatureRepository(session).enabled_map()
            with self._lock:
                self._values, self._loaded_at = values, now
        return values.get(name, default)

    def invalidate(self) -> None:
        with self._lock:
            self._loaded_at = float("-inf")


feature_cache = FeatureCache()


def is_enabled(session: Session, name: str, ttl: float, default: bool = True) -> bool:
    return feature_cache.is_enabled(session, name, ttl, default)
