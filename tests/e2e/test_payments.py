"""Payments with the real processes: each payment charged once whatever fails, declines cancel
the order, refunds go through the gateway, and a cancelled order never keeps a charge."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest
import requests

from tests.e2e.conftest import Stack, wait_for
from tests.e2e.harness import ShopClient

pytestmark = pytest.mark.e2e


class Payments:
    """The shop, an admin, a product, and how to read payments and the sandbox's charges."""

    def __init__(self, stack: Stack, stock: int = 100, price: float = 12.5) -> None:
        self.stack = stack
        self.shop = ShopClient(stack)
        _, self.admin = self.shop.sign_up("admin")
        self.product = self.shop.create_product(self.admin, stock=stock, price=price)

    def place(self, quantity: int = 1, **extra: Any) -> tuple[str, str]:
        """A new customer checks out ``quantity`` units; returns (orderId, paymentId)."""
        user_id, token = self.shop.sign_up()
        cart_id = self.shop.fill_cart(user_id, token, self.product, quantity)
        response = self.shop.checkout(user_id, token, cart_id, **extra)
        assert response.status_code == 201, response.text
        body = response.json()
        return body["orderId"], body["payment"]["paymentId"]

    def payment(self, order_id: str) -> dict[str, Any]:
        response = self.shop.request("GET", f"/orders/{order_id}/payment", self.admin)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def order(self, order_id: str) -> dict[str, Any]:
        return self.shop.order(order_id, self.admin)

    def wait_payment(self, order_id: str, status: str, timeout: float = 60) -> dict[str, Any]:
        return wait_for(
            lambda: (p := self.payment(order_id))["status"] == status and p,
            timeout,
            interval=0.25,
            what=f"payment of {order_id} {status}",
        )

    def charges(self, payment_id: str) -> dict[str, Any]:
        response = requests.get(
            f"{self.stack.sandbox_url}/_sandbox/stats", params={"paymentId": payment_id}, timeout=5
        )
        response.raise_for_status()
        return dict(response.json())

    def stock(self) -> int:
        return int(self.shop.request("GET", f"/products/{self.product}").json()["stock"])


@pytest.mark.timeout(600)
def test_a_worker_killed_while_charging_is_restarted_and_the_payment_completes_with_one_charge(stack: Stack):
    stack.start_stack()
    payments = Payments(stack)
    # The gateway answers slowly, so the worker is killed while its charge is in flight: the
    # gateway charges, the worker never hears of it.
    payments.shop.sandbox_faults(delayMs=5000)
    order_id, payment_id = payments.place()
    wait_for(lambda: payments.payment(order_id)["attempts"] >= 1, 30, what="the charge attempt")
    time.sleep(1)
    stack.kill("worker")
    payments.shop.sandbox_faults()

    stack.start("worker")
    stack.wait_worker(occurrence=2, timeout=120)
    # The lost task is found by the sweep; its charge replays the first under the payment's key.
    payment = payments.wait_payment(order_id, "COMPLETED", timeout=400)
    assert payment["attempts"] >= 2
    charges = payments.charges(payment_id)
    assert (charges["paymentIntents"], charges["succeededCharges"]) == (1, 1)
    assert payment["gatewayReference"] == charges["paymentIntentIds"][0]


def test_a_gateway_failing_several_times_is_retried_and_charges_once(stack: Stack):
    stack.start_stack()
    payments = Payments(stack)
    payments.shop.sandbox_faults(failNext=3, status=503)
    order_id, payment_id = payments.place()
    payment = payments.wait_payment(order_id, "COMPLETED")
    assert payment["attempts"] == 4
    charges = payments.charges(payment_id)
    assert (charges["paymentIntents"], charges["succeededCharges"]) == (1, 1)


def test_without_a_retry_window_a_declined_card_cancels_the_order_and_returns_its_stock(stack: Stack):
    stack.env["PAYMENT_RETRY_WINDOW_SECONDS"] = "0"  # release 1's behaviour
    stack.start_stack()
    payments = Payments(stack, stock=10)
    order_id, payment_id = payments.place(quantity=3, paymentToken="pm_card_chargeDeclinedInsufficientFunds")
    payment = payments.wait_payment(order_id, "FAILED")
    assert payment["failureReason"] == "INSUFFICIENT_FUNDS"
    order = wait_for(lambda: (o := payments.order(order_id))["status"] == "CANCELLED" and o, 30)
    assert order["cancelReason"] == "PAYMENT_FAILED"
    assert payments.stock() == 10
    assert payments.charges(payment_id)["succeededCharges"] == 0


def test_an_admin_refund_goes_through_the_gateway_and_cancels_the_placed_order(stack: Stack):
    stack.start_stack()
    payments = Payments(stack, stock=10)
    order_id, payment_id = payments.place(quantity=2)
    payments.wait_payment(order_id, "COMPLETED")
    accepted = payments.shop.request("POST", f"/orders/{order_id}/refund", payments.admin)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["paymentId"] == payment_id
    payment = payments.wait_payment(order_id, "REFUNDED")
    assert payment["refundReference"].startswith("re_")
    assert payments.order(order_id)["cancelReason"] == "PAYMENT_REFUNDED"
    charges = payments.charges(payment_id)
    assert charges["amountRefunded"] == charges["amountCaptured"] == 2500
    assert payments.stock() == 10


def test_cancellations_racing_the_charge_never_leave_a_cancelled_order_with_a_standing_charge(stack: Stack):
    stack.start_stack()
    payments = Payments(stack)
    payments.shop.sandbox_faults(delayMs=300)
    placed = []
    for _ in range(8):
        order_id, payment_id = payments.place()
        time.sleep(random.uniform(0, 0.8))  # anywhere from before the charge to after it
        cancelled = payments.shop.request(
            "PUT", f"/orders/{order_id}", payments.admin, json={"status": "CANCELLED"}
        )
        assert cancelled.status_code == 200, cancelled.text
        placed.append((order_id, payment_id))

    def settled(order_id: str, payment_id: str) -> bool:
        """A final state: never charged and FAILED, or charged, refunded and REFUNDED."""
        status = payments.payment(order_id)["status"]
        charges = payments.charges(payment_id)
        if charges["succeededCharges"]:
            return status == "REFUNDED" and charges["amountRefunded"] == charges["amountCaptured"]
        return status == "FAILED"

    def all_settled_twice() -> bool:
        # Twice, further apart than the gateway's delay: a charge still in flight at the first look
        # (no charge yet, payment FAILED) would break the second.
        if not all(settled(o, p) for o, p in placed):
            return False
        time.sleep(1.5)
        return all(settled(o, p) for o, p in placed)

    wait_for(all_settled_twice, 90, interval=0.5, what="every order settled")
    for order_id, payment_id in placed:
        assert payments.order(order_id)["status"] == "CANCELLED"
        charges = payments.charges(payment_id)
        assert charges["succeededCharges"] <= 1
        payment = payments.payment(order_id)
        if charges["succeededCharges"]:
            assert payment["status"] == "REFUNDED" and charges["amountRefunded"] == 1250
        else:
            assert (payment["status"], payment["failureReason"]) == ("FAILED", "ORDER_CANCELLED")
    assert payments.stock() == 100


@pytest.mark.timeout(300)
def test_a_slow_gateway_answering_after_the_timeout_keeps_no_money_for_a_cancelled_order(stack: Stack):
    """The confirm's answer comes after PAYMENT_GATEWAY_TIMEOUT_SECONDS; the customer cancels
    meanwhile: the stored PaymentIntent is cancelled at the gateway, or — the confirm having won
    the race — its charge is refunded. Either way no money is kept, and only one charge exists."""
    stack.env["PAYMENT_GATEWAY_TIMEOUT_SECONDS"] = "1"
    stack.start_stack()
    payments = Payments(stack, stock=10)
    payments.shop.sandbox_faults(delayConfirmMs=2500)
    placed = []
    for _ in range(3):
        user_id, token = payments.shop.sign_up()
        cart_id = payments.shop.fill_cart(user_id, token, payments.product, 1)
        response = payments.shop.checkout(user_id, token, cart_id)
        assert response.status_code == 201, response.text
        order_id, payment_id = response.json()["orderId"], response.json()["payment"]["paymentId"]
        wait_for(lambda p=payment_id: payments.charges(p)["paymentIntents"] == 1, 30, interval=0.1)
        cancelled = payments.shop.request("PUT", f"/orders/{order_id}", token, json={"status": "CANCELLED"})
        assert cancelled.status_code == 200, cancelled.text
        placed.append((order_id, payment_id))

    def settled(order_id: str, payment_id: str) -> bool:
        charges = payments.charges(payment_id)
        status = payments.payment(order_id)["status"]
        if charges["succeededCharges"]:
            return status == "REFUNDED" and charges["amountRefunded"] == charges["amountCaptured"]
        return status == "FAILED" and charges["canceledPaymentIntents"] == 1

    wait_for(lambda: all(settled(o, p) for o, p in placed), 120, interval=0.5, what="every void settled")
    payments.shop.sandbox_faults()
    for order_id, payment_id in placed:
        charges = payments.charges(payment_id)
        assert charges["paymentIntents"] == 1 and charges["succeededCharges"] <= 1
        assert charges["amountRefunded"] == charges["amountCaptured"]
        assert payments.order(order_id)["cancelReason"] == "CANCELLED_BY_CUSTOMER"
    assert payments.stock() == 10
