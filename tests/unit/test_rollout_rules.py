"""SPEC §5.9: which users a partly rolled-out feature is on for (app.domain.rollout)."""

from __future__ import annotations

import uuid

import pytest

from app.domain.rollout import is_on_for, rollout_bucket

USERS = [uuid.UUID(int=i * 7919 + 12345) for i in range(2000)]


def test_a_users_bucket_is_stable_and_spread_over_0_to_99():
    buckets = [rollout_bucket("checkout", u) for u in USERS]
    assert buckets == [rollout_bucket("checkout", str(u)) for u in USERS]
    assert min(buckets) == 0 and max(buckets) == 99
    # Roughly uniform: every decile holds between 6 % and 14 % of 2000 users.
    deciles = [sum(1 for b in buckets if lo <= b < lo + 10) for lo in range(0, 100, 10)]
    assert all(120 <= n <= 280 for n in deciles), deciles


def test_the_bucket_is_a_fixed_function_of_name_and_user():
    # SHA-256 of "checkout:<uuid>", not Python's per-process salted hash(): these never change.
    user = uuid.UUID("01900000-0000-7000-8000-000000000001")
    assert rollout_bucket("checkout", user) == rollout_bucket("checkout", user)
    import hashlib

    expected = int.from_bytes(hashlib.sha256(f"checkout:{user}".encode()).digest()[:8], "big") % 100
    assert rollout_bucket("checkout", user) == expected


def test_each_feature_picks_its_own_early_users():
    first = {u for u in USERS if rollout_bucket("returns", u) < 10}
    second = {u for u in USERS if rollout_bucket("payment-retry", u) < 10}
    assert first != second


@pytest.mark.parametrize("percent", [0, 1, 10, 50, 99, 100])
def test_the_share_of_users_on_follows_the_percentage(percent):
    on = sum(is_on_for("checkout", True, percent, u) for u in USERS)
    assert abs(on / len(USERS) - percent / 100) <= 0.04


def test_raising_the_percentage_only_adds_users():
    for low, high in [(0, 10), (10, 50), (50, 100)]:
        at_low = {u for u in USERS if is_on_for("returns", True, low, u)}
        at_high = {u for u in USERS if is_on_for("returns", True, high, u)}
        assert at_low <= at_high


def test_a_disabled_feature_is_off_for_everyone_whatever_the_percentage():
    assert not any(is_on_for("checkout", False, 100, u) for u in USERS[:100])


def test_without_a_user_only_a_full_rollout_is_on():
    assert is_on_for("checkout", True, 100, None) is True
    assert is_on_for("checkout", True, 99, None) is False
    assert is_on_for("checkout", True, 0, None) is False
