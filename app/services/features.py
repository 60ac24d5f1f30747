"""Feature toggles, stored in Postgres and read through a short per-process cache."""

from __future__ import annotations

import threading
import time

from app.domain.actors import Actor
from app.domain.base import utcnow
from app.domain.errors import NotFound
from app.domain.operations import Feature
from app.log import get_logger
from app.services.unit_of_work import ReadOnlyUnitOfWork, UnitOfWork

log = get_logger(__name__)

CHECKOUT = "checkout"


class FeatureCache:
    """At most ``ttl`` seconds stale in any process; one query refreshes every toggle."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, bool] = {}
        self._loaded_at = float("-inf")

    def is_enabled(self, name: str, ttl: float, default: bool = True) -> bool:
        now = time.monotonic()
        with self._lock:
            fresh = now - self._loaded_at < ttl
            values = self._values
        if not fresh:
            with ReadOnlyUnitOfWork() as uow:
                values = uow.features.enabled_map()
            with self._lock:
                self._values, self._loaded_at = values, now
        return values.get(name, default)

    def invalidate(self) -> None:
        with self._lock:
            self._loaded_at = float("-inf")


feature_cache = FeatureCache()


def is_enabled(name: str, ttl: float, default: bool = True) -> bool:
    return feature_cache.is_enabled(name, ttl, default)


def list_features(actor: Actor) -> list[Feature]:
    """Every toggle, by name (read from Postgres, not the cache)."""
    actor.require_staff()
    with ReadOnlyUnitOfWork() as uow:
        return uow.features.all()


def set_feature(actor: Actor, name: str, enabled: bool) -> Feature:
    """Switch a toggle. This process sees it at once; the others within their cache's TTL."""
    actor.require_staff()
    with UnitOfWork() as uow:
        feature = uow.features.lock(name)
        if feature is None:
            raise NotFound(f"There is no feature named {name!r}")
        if feature.enabled != enabled:
            feature.enabled = enabled
            feature.updated_at = utcnow()
            log.info("feature_toggled", feature=name, enabled=enabled, actor=actor.label)
        uow.commit()
    feature_cache.invalidate()
    return feature
