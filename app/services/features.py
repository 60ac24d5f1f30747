"""Feature toggles, stored in Postgres and read through a short per-process cache."""

from __future__ import annotations

import threading
import time

from sqlalchemy.orm import Session

from app.domain.actors import Actor
from app.domain.base import utcnow
from app.domain.errors import Forbidden, NotFound
from app.domain.operations import Feature
from app.log import get_logger
from app.repositories.features import FeatureRepository
from app.services.unit_of_work import UnitOfWork

log = get_logger(__name__)

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


def _require_admin(actor: Actor) -> None:
    if not (actor.is_admin or actor.is_system):
        raise Forbidden("This operation is reserved to administrators")


def list_features(actor: Actor) -> list[Feature]:
    """Every toggle, by name (read from Postgres, not the cache)."""
    _require_admin(actor)
    with UnitOfWork() as uow:
        features = FeatureRepository(uow.session).all()
        for feature in features:
            uow.session.expunge(feature)
        return features


def set_feature(actor: Actor, name: str, enabled: bool) -> Feature:
    """Switch a toggle. This process sees it at once; the others within their cache's TTL."""
    _require_admin(actor)
    with UnitOfWork() as uow:
        feature = FeatureRepository(uow.session).lock(name)
        if feature is None:
            raise NotFound(f"There is no feature named {name!r}")
        if feature.enabled != enabled:
            feature.enabled = enabled
            feature.updated_at = utcnow()
            log.info("feature_toggled", feature=name, enabled=enabled, actor=actor.label)
        uow.commit()
        uow.session.refresh(feature)
        uow.session.expunge(feature)
    feature_cache.invalidate()
    return feature
