"""OWASP API6:2023 (unrestricted access to sensitive business flows): checkout is rate-limited per user.

Placing orders reserves stock, so a script hammering ``POST /orders`` could hold a shop's stock
hostage. ``CHECKOUT_RATE_LIMIT`` (default ``30/minute``) caps checkouts per user — keyed by the
token's subject, not the address, so one user cannot dodge it by switching addresses and users
behind one NAT do not share it. Every attempt counts, the failed ones too.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask

from tests.conftest import make_app


@pytest.fixture
def limited_app(database_url: str, redis_url: str) -> Iterator[Flask]:
    yield make_app(database_url, redis_url, CHECKOUT_RATE_LIMIT="2/minute")


def checkout(client, user, headers, address="10.0.0.1"):
    return client.post(
        "/orders",
        json={"userId": str(user.id), "cartId": "00000000-0000-0000-0000-000000000000"},
        headers=headers,
        environ_base={"REMOTE_ADDR": address},
    )


def test_the_default_checkout_limit_is_30_per_minute():
    from app.config import Settings

    assert Settings.from_env({}).CHECKOUT_RATE_LIMIT == "30/minute"


def test_checkouts_beyond_the_limit_are_429_with_retry_after(limited_app, customer, token_for):
    client = limited_app.test_client()
    headers = token_for(customer)
    assert [checkout(client, customer, headers).status_code for _ in range(2)] == [404, 404]
    refused = checkout(client, customer, headers)
    assert refused.status_code == 429
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.get_json()["status"] == 429


def test_the_limit_follows_the_user_not_the_address(limited_app, make_user, token_for):
    client = limited_app.test_client()
    first, second = make_user(), make_user()
    for address in ("10.0.0.1", "10.0.0.2"):
        assert checkout(client, first, token_for(first), address).status_code == 404
    # A new address does not reset the first user's count ...
    assert checkout(client, first, token_for(first), "10.0.0.3").status_code == 429
    # ... and another user behind the same address has a count of their own.
    assert checkout(client, second, token_for(second), "10.0.0.1").status_code == 404
