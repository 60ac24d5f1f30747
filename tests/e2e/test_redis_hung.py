"""A hung Redis (SIGSTOP: it accepts connections and never answers) costs a checkout about a second.

All the Redis work of a request — the rate limiter's read and header update, the publish after
commit — shares one budget of about a second (app/adapters/redis_budget.py), and a Redis timeout
makes the next requests skip Redis at once for a few seconds. So ``POST /orders`` answers 201 well
within 1.5 s while Redis is frozen, and once it resumes (SIGCONT) beat's outbox relay publishes
the orders and the worker charges each exactly once.
"""

from __future__ import annotations

import os
import signal

import pytest

from tests.e2e.conftest import Stack, wait_for
from tests.e2e.harness import ShopClient, timed

pytestmark = pytest.mark.e2e

ORDERS = 4
BOUND_SECONDS = 1.5


def test_checkout_answers_within_the_redis_budget_while_redis_is_frozen_and_charges_once_after(stack: Stack):
    stack.start_stack()
    shop = ShopClient(stack)
    _, admin = shop.sign_up("admin")
    product = shop.create_product(admin, stock=50)
    shoppers = [shop.sign_up() for _ in range(ORDERS)]
    carts = {user_id: shop.fill_cart(user_id, token, product, quantity=1) for user_id, token in shoppers}
    assert stack.redis.process is not None
    redis_pid = stack.redis.process.pid

    placed: dict[str, str] = {}
    timings: list[float] = []
    os.kill(redis_pid, signal.SIGSTOP)
    try:
        for user_id, token in shoppers:
            response, seconds = timed(lambda u=user_id, t=token: shop.checkout(u, t, carts[u]))
            assert response.status_code == 201, response.text
            timings.append(seconds)
            placed[response.json()["orderId"]] = token
        read, read_seconds = timed(
            lambda: shop.request("GET", f"/orders/{next(iter(placed))}", shoppers[0][1])
        )
        assert read.status_code == 200
        timings.append(read_seconds)
    finally:
        os.kill(redis_pid, signal.SIGCONT)
    print(f"seconds per request with Redis frozen: {[round(t, 2) for t in timings]}")
    assert max(timings) < BOUND_SECONDS, timings
    assert all(shop.payment_status(o, t) == "PENDING" for o, t in placed.items())

    shop.wait_payments(placed, "COMPLETED", timeout=120)
    charges = shop.charges_by_payment()
    for order_id, token in placed.items():
        payment_id = shop.order(order_id, token)["payment"]["paymentId"]
        assert len(charges.get(payment_id, [])) == 1, charges.get(payment_id)
    assert all(stack.processes[name].poll() is None for name in ("web", "worker", "beat"))
    wait_for(lambda: shop.request("GET", "/readyz").json()["redis"]["status"] == "ok", 30, what="redis ok")
