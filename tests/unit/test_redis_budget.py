"""The request-path Redis budget's bookkeeping (the e2e test freezes a real Redis)."""

from __future__ import annotations

import time

import pytest

from app.adapters import redis_budget


@pytest.fixture(autouse=True)
def _fresh():
    redis_budget.mark_available()
    redis_budget.end_request_budget()
    yield
    redis_budget.mark_available()
    redis_budget.end_request_budget()


def test_outside_a_request_nothing_is_skipped_even_after_a_timeout():
    redis_budget.mark_unavailable()
    assert redis_budget.remaining() is None
    assert redis_budget.skip_reason() is None
    redis_budget.check()


def test_a_request_has_about_a_second_and_then_skips():
    redis_budget.start_request_budget(0.05)
    left = redis_budget.remaining()
    assert left is not None and 0 < left <= 0.05
    assert redis_budget.skip_reason() is None
    time.sleep(0.06)
    assert redis_budget.skip_reason() == "the request's Redis budget is spent"
    with pytest.raises(redis_budget.RedisBudgetExceeded):
        redis_budget.check()


def test_a_timeout_makes_the_next_requests_fail_fast_until_the_recheck():
    redis_budget.start_request_budget()
    redis_budget.mark_unavailable()
    redis_budget.start_request_budget()  # the next request
    assert redis_budget.skip_reason() == "Redis was seen hung moments ago"
    redis_budget.mark_available()
    assert redis_budget.skip_reason() is None


def test_the_default_budget_is_about_a_second():
    assert redis_budget.REQUEST_BUDGET_SECONDS == 1.0
    assert redis_budget.RECHECK_SECONDS >= 1.0
