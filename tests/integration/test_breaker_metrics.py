"""The breaker-state gauges read the keys the real breakers write in Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from app.adapters.breakers import SharedCircuitBreaker
from app.adapters.mailer import smtp_breaker
from app.task_metrics import RedisStateCollector


def states(redis_url: str) -> dict[tuple[str, str], float]:
    registry = CollectorRegistry()
    registry.register(RedisStateCollector(redis_url, ("oms",)))
    found = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        if family.name == "oms_circuit_breaker_state":
            for sample in family.samples:
                found[(sample.labels["breaker"], sample.labels["state"])] = sample.value
    return found


def boom() -> None:
    raise ConnectionError("down")


@pytest.fixture
def clean_redis(redis_url: str) -> Iterator[str]:
    """No breaker state before, and none left behind for the next test (it would find SMTP open)."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield redis_url
    client.flushdb()


def test_tripping_the_real_breakers_shows_them_open(clean_redis):
    redis_url = clean_redis
    assert states(redis_url)[("gateway", "closed")] == 1
    assert states(redis_url)[("smtp", "closed")] == 1

    gateway = SharedCircuitBreaker("payment-gateway", redis_url, fail_max=1, reset_timeout=60)
    with pytest.raises(ConnectionError):
        gateway.call(boom)
    assert gateway.current_state == "open"
    seen = states(redis_url)
    assert seen[("gateway", "open")] == 1 and seen[("gateway", "closed")] == 0
    assert seen[("smtp", "open")] == 0

    smtp = smtp_breaker(redis_url, fail_max=1, reset_timeout=60)
    with pytest.raises(ConnectionError):
        smtp.call(boom)
    assert states(redis_url)[("smtp", "open")] == 1
