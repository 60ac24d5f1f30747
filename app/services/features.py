"""Feature toggles, stored in Postgres and read through a short per-process cache."""

from __future__ import annotations

import threading
import time
import uuid

from app.domain.actors import Actor
from app.domain.audit import AuditAction, AuditResource, diff
from app.domain.base import utcnow
from app.domain.errors import NotFound
from app.domain.operations import Feature
from app.domain.rollout import FULL_ROLLOUT, is_on_for
from app.log import get_logger
from app.services.unit_of_work import ReadOnlyUnitOfWork, UnitOfWork

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
        self, name: str, ttl: float, default: bool = True, user_id: uuid.UUID | None = None
    ) -> bool:
        """On for this user (``app.domain.rollout``); without a user, on only when fully rolled out."""
        now = time.monotonic()
        with self._lock:
            fresh = now - self._loaded_at < ttl
            values = self._values
        if not fresh:
            with ReadOnlyUnitOfWork() as uow:
                values = uow.features.enabled_map()
            with self._lock:
                self._values, self._loaded_at = values, now
        enabled, percent = values.get(name, (default, FULL_ROLLOUT))
        return is_on_for(name, enabled, percent, user_id)

    def invalidate(self) -> None:
        with self._lock:
            self._loaded_at = float("-inf")


feature_cache = FeatureCache()


def is_enabled(name: str, ttl: float, default: bool = True, user_id: uuid.UUID | None = None) -> bool:
    return feature_cache.is_enabled(name, ttl, default, user_id)


def list_features(actor: Actor) -> list[Feature]:
    """Every toggle, by name (read from Postgres, not the cache)."""
    actor.require_staff()
    with ReadOnlyUnitOfWork() as uow:
        return uow.features.all()


def set_feature(actor: Actor, name: str, enabled: bool, rollout_percent: int | None = None) -> Feature:
    """Switch a toggle and, when given, set its rollout percentage (left out: it stays). This process
    sees it at once; the others within their cache's TTL."""
    actor.require_staff()
    with UnitOfWork() as uow:
        feature = uow.features.lock(name)
        if feature is None:
            raise NotFound(f"There is no feature named {name!r}")
        percent = feature.rollout_percent if rollout_percent is None else rollout_percent
        if feature.enabled != enabled or feature.rollout_percent != percent:
            uow.audit(
                actor,
                AuditAction.FEATURE_CHANGED,
                AuditResource.FEATURE,
                name,
                diff(
                    {"enabled": feature.enabled, "rolloutPercent": feature.rollout_percent},
                    {"enabled": enabled, "rolloutPercent": percent},
                ),
            )
            feature.enabled = enabled
            feature.rollout_percent = percent
            feature.updated_at = utcnow()
            log.info(
                "feature_toggled", feature=name, enabled=enabled, rollout_percent=percent, actor=actor.label
            )
        uow.commit()
    feature_cache.invalidate()
    return feature
