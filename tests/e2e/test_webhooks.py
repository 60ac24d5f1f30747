"""Webhooks with the real processes (web, worker, the webhooks worker, beat) and a real receiver on
loopback: an order's events arrive signed and in full, a 500 is retried into a 200, and an admin's
manual retry sends the same event again."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import pytest
from standardwebhooks import Webhook

from tests.e2e.conftest import Stack, wait_for
from tests.e2e.harness import ShopClient
from tests.webhook_receiver import Received, running_receiver

pytestmark = pytest.mark.e2e


def events_of(received: list[Received], secret: str) -> list[tuple[Received, dict[str, Any]]]:
    return [(r, Webhook(secret).verify(r.body, r.headers)) for r in received]


@pytest.mark.timeout(300)
def test_an_orders_events_arrive_signed_in_full_after_a_retry_and_again_on_a_manual_retry(
    stack: Stack,
) -> None:
    stack.env.update(WEBHOOK_RETRY_SCHEDULE="1,1,1", WEBHOOK_SWEEP_SECONDS="1")
    stack.start_stack()
    stack.start("webhooks")
    stack.wait_worker("webhooks")
    shop = ShopClient(stack)
    _, admin = shop.sign_up("admin")
    product = shop.create_product(admin, stock=10, price=7.5)

    with running_receiver(script=[500]) as receiver:
        created = shop.request("POST", "/admin/webhooks", admin, json={"url": receiver.url, "events": ["*"]})
        assert created.status_code == 201, created.text
        webhook_id, secret = created.json()["webhookId"], created.json()["secret"]

        user_id, token = shop.sign_up()
        cart_id = shop.fill_cart(user_id, token, product, 2)
        placed = shop.checkout(user_id, token, cart_id)
        assert placed.status_code == 201, placed.text
        order_id = placed.json()["orderId"]

        def arrived() -> list[tuple[Received, dict[str, Any]]] | None:
            got = events_of([r for r in receiver.received if r.status == 200], secret)
            types = {payload["type"] for _, payload in got}
            return got if {"order.placed", "order.paid"} <= types else None

        got = wait_for(arrived, 90, interval=0.25, what="order.placed and order.paid")
        by_type: dict[str, list[tuple[Received, dict[str, Any]]]] = {}
        for request, payload in got:
            by_type.setdefault(payload["type"], []).append((request, payload))

        # The first request (whichever event it carried) got 500 and was sent again, same id and body.
        (refused,) = [r for r in receiver.received if r.status == 500]
        same_id = [r for r in receiver.received if r.headers["webhook-id"] == refused.headers["webhook-id"]]
        assert [r.status for r in same_id] == [500, 200] and len({r.body for r in same_id}) == 1

        # In full: order.paid carries the order exactly as an admin's GET /orders/{id} shows it.
        (_, paid), *_ = by_type["order.paid"]
        assert paid["data"] == shop.order(order_id, admin)
        assert paid["data"]["status"] == "PLACED" and paid["data"]["payment"]["status"] == "COMPLETED"
        (_, placed_event), *_ = by_type["order.placed"]
        assert placed_event["data"]["orderId"] == order_id and placed_event["data"]["totalAmount"] == 15.0

        deliveries = shop.request("GET", f"/admin/webhooks/{webhook_id}/deliveries", admin).json()
        assert {d["status"] for d in deliveries["items"]} == {"SUCCEEDED"}
        assert sorted(d["attempts"] for d in deliveries["items"])[-1] == 2
        retried = next(d for d in deliveries["items"] if d["eventType"] == "order.paid")

        # A manual retry sends the same event (same webhook-id) once more.
        before = len(receiver.received)
        response = shop.request(
            "POST", f"/admin/webhooks/{webhook_id}/deliveries/{retried['deliveryId']}/retry", admin
        )
        assert response.status_code == 202, response.text
        receiver.wait_for(before + 1, timeout=30)
        again = receiver.received[before]
        assert again.headers["webhook-id"] == retried["eventId"]
        assert json.loads(again.body)["type"] == "order.paid"
        Webhook(secret).verify(again.body, again.headers)


@pytest.mark.timeout(300)
def test_a_dead_endpoint_never_delays_charges_or_e_mail(stack: Stack) -> None:
    """Every delivery to the endpoint hangs past the timeout, holding both webhook processes; the
    orders placed meanwhile are still charged and e-mailed by the main worker without waiting."""
    stack.env.update(WEBHOOK_TIMEOUT_SECONDS="5", WEBHOOK_RETRY_SCHEDULE="1,1,1,1,1")
    stack.start(
        "smtp", f"{sys.executable} -m app.devtools.smtp_sink --host 127.0.0.1 --port {stack.smtp_port}"
    )
    stack.start_stack()
    stack.start("webhooks")
    stack.wait_worker("webhooks")
    shop = ShopClient(stack)
    _, admin = shop.sign_up("admin")
    product = shop.create_product(admin, stock=50, price=3.0)

    with running_receiver(delay=30.0) as dead:
        created = shop.request("POST", "/admin/webhooks", admin, json={"url": dead.url, "events": ["*"]})
        assert created.status_code == 201, created.text
        webhook_id = created.json()["webhookId"]
        placed: dict[str, tuple[str, str]] = {}
        started = time.monotonic()
        for _ in range(4):
            user_id, token = shop.sign_up()
            cart_id = shop.fill_cart(user_id, token, product, 1)
            response = shop.checkout(user_id, token, cart_id)
            assert response.status_code == 201, response.text
            placed[response.json()["orderId"]] = (user_id, token)

        def charged_and_mailed() -> bool:
            for order_id, (user_id, token) in placed.items():
                if shop.order(order_id, token)["payment"]["status"] != "COMPLETED":
                    return False
                mails = shop.request("GET", f"/users/{user_id}/notifications", token).json()["items"]
                if sum(1 for n in mails if n["status"] == "SENT") < 2:  # placed + paid
                    return False
            return True

        wait_for(charged_and_mailed, 60, interval=0.25, what="every order charged and e-mailed")
        elapsed = time.monotonic() - started

        # The webhook worker is stuck on the dead endpoint all along: nothing succeeded there.
        # All their deliveries exist (the fan-out is each event's last handler, so the last ones may
        # trail the e-mails by a moment).
        def deliveries_page() -> dict[str, Any]:
            return dict(shop.request("GET", f"/admin/webhooks/{webhook_id}/deliveries", admin).json())

        deliveries = wait_for(
            lambda: (page := deliveries_page())["totalItems"] >= 8 and page, 30, what="8 deliveries"
        )
        assert all(d["status"] == "PENDING" for d in deliveries["items"])
    # Sharing the main pool, the 8+ deliveries (5 s each, two processes) would hold it 20 s and more.
    print(f"charged and e-mailed in {elapsed:.1f} s")
    assert elapsed < 15, elapsed
