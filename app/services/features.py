"""Feature toggles, stored in Postgres and read through a short per-process cache."""

from __future__ import annotations

import threading
import time
import uuid

from sqlalchemy.orm import Session

from app.domain.actors import Actor
from app.domain.base import utcnow
from app.domain.errors import Forbidden, NotFound
from app.domain.operations import Feature
from app.domain.rollout import FULL_ROLLOUT, is_on_for
from app.log import get_logger
from app.repositories.features import FeatureRepository
from app.services.unit_of_work import UnitOfWork

log = get_logger(__name__)

CHECKOUT = "checkout"
RETURNS = "returns"
PAYMENT_RETRY = "payment-retry"


class FeatureCache:
    """At most ``ttl`` seconds stale in any process; one query refreshes every toggle."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, tuple[bool, int]] = {}
        self._loaded_at = float("-inf")

    def is_enabled(
        self, session: Session, name: str, ttl: float, default: bool = True, user_id: uuid.UUID | None = None
    ) -> bool:
        """On for this user (``app.domain.rollout``); without a user, on only when fully rolled out."""
        now = time.monotonic()
        with self._lock:
            fresh = now - self._loaded_at < ttl
            values = self._values
        if not fresh:
            values = FeatureRepository(session).enabled_map()
            with self._lock:
                self._values, self._loaded_at = values, now
        enabled, percent = values.get(name, (default, FULL_ROLLOUT))
        return is_on_for(name, enabled, percent, user_id)

    def invalidate(self) -> None:
        with self._lock:
            self._loaded_at = float("-inf")


feature_cache = FeatureCache()


def is_enabled(
    session: Session, name: str, ttl: float, default: bool = True, user_id: uuid.UUID | None = None
) -> bool:
    return feature_cache.is_enabled(session, name, ttl, default, user_id)


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


def set_feature(actor: Actor, name: str, enabled: bool, rollout_percent: int | None = None) -> Feature:
    """Switch a toggle and, when given, set its rollout percentage (left out: it stays). This process
    sees it at once; the others within their cache's TTL."""
    _require_admin(actor)
    with UnitOfWork() as uow:
        feature = FeatureRepository(uow.session).lock(name)
        if feature is None:
            raise NotFound(f"There is no feature named {name!r}")
        percent = feature.rollout_percent if rollout_percent is None else rollout_percent
        if feature.enabled != enabled or feature.rollout_percent != percent:
            feature.enabled = enabled
            feature.rollout_percent = percent
            feature.updated_at = utcnow()
            log.info(
                "feature_toggled", feature=name, enabled=enabled, rollout_percent=percent, actor=actor.label
            )
        uow.commit()
        uow.session.refresh(feature)
        uow.session.expunge(feature)
    feature_cache.invalidate()
    return feature
