"""The life of an order with the real processes (SPEC §5.1/§5.2): paid, shipped in two parts with
tracking, delivered, part returned and received, refunded through the sandbox — and the customer's
e-mails (one per shipment, with carrier and tracking) in the SMTP sink."""

from __future__ import annotations

import re
import sys
from typing import Any

import pytest

from tests.e2e.conftest import Stack, wait_for
from tests.e2e.harness import ShopClient

pytestmark = pytest.mark.e2e


def test_an_order_shipped_in_two_parts_delivered_part_returned_and_refunded(stack: Stack) -> None:
    stack.start(
        "smtp", f"{sys.executable} -m app.devtools.smtp_sink --host 127.0.0.1 --port {stack.smtp_port}"
    )
    stack.start_stack()
    shop = ShopClient(stack)
    _, admin = shop.sign_up("admin")
    product = shop.create_product(admin, stock=10, price=12.5)
    user_id, token = shop.sign_up()
    cart_id = shop.fill_cart(user_id, token, product, quantity=3)
    placed = shop.checkout(user_id, token, cart_id)
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["orderId"]
    wait_for(lambda: shop.payment_status(order_id, token) == "COMPLETED", 60, interval=0.25, what="paid")

    def call(method: str, path: str, who: str, body: dict[str, Any] | None = None, status: int = 200) -> Any:
        response = shop.request(method, path, who, json=body)
        assert response.status_code == status, response.text
        return response.json()

    shipments = f"/orders/{order_id}/shipments"
    first = call(
        "POST",
        shipments,
        admin,
        {"items": [{"productId": product, "quantity": 2}], "carrier": "UPS", "trackingNumber": "1ZE2E0001"},
        201,
    )
    order = shop.order(order_id, token)
    assert (order["status"], order["fulfillmentStatus"]) == ("PLACED", "PARTIALLY_SHIPPED")
    second = call("POST", shipments, admin, {"carrier": "DHL", "trackingNumber": "JDE2E0002"}, 201)
    assert shop.order(order_id, token)["status"] == "SHIPPED"
    for shipment in (first, second):
        call("PUT", f"{shipments}/{shipment['shipmentId']}", admin, {"status": "DELIVERED"})
    assert shop.order(order_id, token)["fulfillmentStatus"] == "DELIVERED"

    returns = f"/orders/{order_id}/returns"
    ret = call(
        "POST", returns, token, {"items": [{"productId": product, "quantity": 1}], "reason": "DAMAGED"}, 201
    )
    assert ret["refundAmount"] == 12.5
    call("PUT", f"{returns}/{ret['returnId']}", admin, {"status": "RECEIVED"})
    wait_for(
        lambda: call("GET", returns, token)["items"][0]["status"] == "REFUNDED",
        60,
        interval=0.25,
        what="return REFUNDED",
    )
    payment = call("GET", f"/orders/{order_id}/payment", token)
    assert (payment["status"], payment["refundedAmount"]) == ("PARTIALLY_REFUNDED", 12.5)
    order = shop.order(order_id, token)
    assert order["status"] == "DELIVERED" and order["orderItems"][0]["quantityReturned"] == 1
    assert call("GET", f"/products/{product}", token)["stock"] == 8  # 10 - 3 + 1 back

    expected = {
        "OrderPlaced": 1,
        "PaymentCompleted": 1,
        "OrderShipped": 2,
        "OrderDelivered": 1,
        "ReturnRequested": 1,
        "ReturnReceived": 1,
        "ReturnRefunded": 1,
    }

    def sent() -> dict[str, int]:
        items = call("GET", f"/users/{user_id}/notifications?pageSize=100", token)["items"]
        counts: dict[str, int] = {}
        for n in items:
            if n["status"] == "SENT":
                counts[n["event"]] = counts.get(n["event"], 0) + 1
        return counts

    wait_for(
        lambda: all(sent().get(k, 0) >= v for k, v in expected.items()), 90, interval=0.5, what="e-mails sent"
    )
    assert {k: sent().get(k, 0) for k in expected} == expected
    mail = stack.log("smtp")
    subjects = re.findall(r"^Subject: (.+)$", mail, flags=re.MULTILINE)
    assert sum("has shipped" in s for s in subjects) == 2
    assert "Carrier: UPS" in mail and "Tracking number: 1ZE2E0001" in mail
    assert "Carrier: DHL" in mail and "Tracking number: JDE2E0002" in mail
    assert any("was delivered" in s for s in subjects)
    assert any("return request" in s for s in subjects)
    assert any("has arrived" in s for s in subjects)
    assert any("Refund issued for your return" in s for s in subjects)
