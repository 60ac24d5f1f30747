"""Gradual rollout of a feature toggle: which users a partly rolled-out feature is on for.

A feature rolled out to ``p`` % is on for a user when a stable hash of (feature name, user id) falls
in the first ``p`` of 100 buckets. The hash is SHA-256, not Python's ``hash()`` (salted per process),
so every process, every release and every restart gives a user the same answer; raising the
percentage only adds users (a user on at 10 % stays on at 50 %). Hashing the feature's name with the
user spreads each feature's early users differently, so the same users are not the guinea pigs of
every rollout.
"""

from __future__ import annotations

import hashlib
import uuid

FULL_ROLLOUT = 100
BUCKETS = 100


def rollout_bucket(feature: str, user_id: uuid.UUID | str) -> int:
    """The user's bucket for this feature, 0..99, the same in every process and release."""
    digest = hashlib.sha256(f"{feature}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def is_on_for(feature: str, enabled: bool, rollout_percent: int, user_id: uuid.UUID | str | None) -> bool:
    """Whether the feature is on for this caller. Without a user (anonymous or system) only a full
    rollout counts as on: a partial rollout has no bucket to put them in."""
    if not enabled or rollout_percent <= 0:
        return False
    if rollout_percent >= FULL_ROLLOUT:
        return True
    if user_id is None:
        return False
    return rollout_bucket(feature, user_id) < rollout_percent
