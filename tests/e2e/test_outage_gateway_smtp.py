"""The gateway slower than our timeout, and SMTP down: the API keeps answering, nothing is lost.

Charging and e-mail happen in the worker, so neither outage reaches a request: checkout answers
201 at once. A gateway that answers after the client gave up has still charged; the retries reuse
the payment's idempotency key, so each payment has exactly one PaymentIntent. E-mails that could
not be sent are FAILED with the error, and go out once — and only once — when SMTP is back.
(A gateway answering 503 several times, and a worker killed mid-charge, are in
tests/e2e/test_payments.py.)
"""

from __future__ import annotations

import re
import sys

import pytest

from tests.e2e.conftest import Stack, wait_for
from tests.e2e.harness import ShopClient, assert_no_unexpected_5xx, timed

pytestmark = pytest.mark.e2e

MAX_SECONDS_PER_REQUEST = 3.0


def start_processes(stack: Stack, **env: str) -> ShopClient:
    stack.env.update(env)
    stack.start_stack()
    return ShopClient(stack)


def place_orders(shop: ShopClient, count: int) -> dict[str, tuple[str, str]]:
    """``count`` customers check out; returns orderId → (userId, token), each answered in time."""
    _, admin = shop.sign_up("admin")
    product = shop.create_product(admin, stock=50)
    placed: dict[str, tuple[str, str]] = {}
    responses = []
    for _ in range(count):
        user_id, token = shop.sign_up()
        cart_id = shop.fill_cart(user_id, token, product)
        response, seconds = timed(lambda u=user_id, t=token, c=cart_id: shop.checkout(u, t, c))
        responses.append(response)
        assert response.status_code == 201, response.text
        assert seconds < MAX_SECONDS_PER_REQUEST, f"POST /orders took {seconds:.2f}s"
        placed[response.json()["orderId"]] = (user_id, token)
    assert_no_unexpected_5xx(responses)
    return placed


def test_a_gateway_slower_than_the_timeout_delays_payments_but_charges_each_once(stack: Stack):
    shop = start_processes(
        stack,
        PAYMENT_GATEWAY_TIMEOUT_SECONDS="1",
        PAYMENT_BREAKER_RESET_SECONDS="2",
        PAYMENT_MAX_ATTEMPTS="30",
    )
    shop.sandbox_faults(delayMs=2500)
    placed = place_orders(shop, 3)
    wait_for(
        lambda: (
            all(shop.order(o, t)["payment"]["status"] == "PENDING" for o, (_, t) in placed.items())
            and "charge_attempt_failed" in stack.log("worker")
        ),
        60,
        what="timed-out charge attempts",
    )
    shop.sandbox_faults()

    shop.wait_payments({order_id: token for order_id, (_, token) in placed.items()}, "COMPLETED")
    charges = shop.charges_by_payment()
    for order_id, (_, token) in placed.items():
        payment_id = shop.order(order_id, token)["payment"]["paymentId"]
        assert [c["status"] for c in charges.get(payment_id, [])] == ["succeeded"], payment_id


def test_smtp_down_fails_the_emails_not_the_orders_and_they_go_out_once_when_it_is_back(stack: Stack):
    shop = start_processes(
        stack,
        NOTIFY_MAX_ATTEMPTS="2",
        NOTIFY_RETRY_INTERVAL_SECONDS="3",
        SMTP_TIMEOUT_SECONDS="1",
        SMTP_BREAKER_RESET_SECONDS="1",
    )
    # Nothing listens on the stack's SMTP port yet.
    placed = place_orders(shop, 2)
    shop.wait_payments({order_id: token for order_id, (_, token) in placed.items()}, "COMPLETED")

    def notifications(user_id: str, token: str) -> list[dict[str, object]]:
        response = shop.request("GET", f"/users/{user_id}/notifications", token)
        assert response.status_code == 200
        return list(response.json()["items"])

    # The retry job puts FAILED ones back to work every few seconds, so remember each one seen
    # FAILED (with its error) rather than wait for a moment when all of them are at once.
    seen_failed: set[object] = set()
    seen_sent: set[object] = set()

    def each_failed_once() -> bool:
        items = [n for user_id, token in placed.values() for n in notifications(user_id, token)]
        seen_sent.update(n["notificationId"] for n in items if n["status"] == "SENT")
        seen_failed.update(n["notificationId"] for n in items if n["status"] == "FAILED" and n["lastError"])
        return len(items) >= 2 * len(placed) and seen_failed >= {n["notificationId"] for n in items}

    wait_for(each_failed_once, 90, interval=0.5, what="every notification FAILED with its error")
    assert seen_sent == set(), "an e-mail was SENT while SMTP was down"

    stack.start(
        "smtp", f"{sys.executable} -m app.devtools.smtp_sink --host 127.0.0.1 --port {stack.smtp_port}"
    )

    def all_sent() -> bool:
        items = [n for user_id, token in placed.values() for n in notifications(user_id, token)]
        return all(n["status"] == "SENT" for n in items)

    wait_for(all_sent, 90, interval=0.5, what="notifications SENT once SMTP is back")
    sent = [n for user_id, token in placed.values() for n in notifications(user_id, token)]
    # Each notification went out exactly once: the sink printed one message per notification.
    message_ids = re.findall(r"^Message-ID: (.+)$", stack.log("smtp"), flags=re.MULTILINE)
    assert len(message_ids) == len(sent)
    assert len(set(message_ids)) == len(message_ids)
