"""SPEC §5.3 / §5.2 with the real processes (web, worker, beat, the sandbox sending signed
webhooks to the web process): 3-D Secure, decline → retry → paid, a window that passes, lost
webhooks converging by the sweep's poll, partial refunds to the full amount, a refund that fails
at the gateway, and a dispute."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.e2e.conftest import Stack, wait_for
from tests.e2e.test_payments import Payments

pytestmark = pytest.mark.e2e


def sandbox(stack: Stack, path: str, **body: Any) -> dict[str, Any]:
    response = requests.post(f"{stack.sandbox_url}{path}", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())


def place_as_owner(payments: Payments, token: str) -> tuple[str, str, str]:
    """(orderId, paymentId, the owner's bearer token)."""
    user_id, owner = payments.shop.sign_up()
    cart_id = payments.shop.fill_cart(user_id, owner, payments.product, 2)
    response = payments.shop.checkout(user_id, owner, cart_id, paymentToken=token)
    assert response.status_code == 201, response.text
    return response.json()["orderId"], response.json()["payment"]["paymentId"], owner


def intent_of(payments: Payments, payment_id: str) -> str:
    found = requests.get(
        f"{payments.stack.sandbox_url}/v1/payment_intents/search",
        params={"query": f"metadata['paymentId']:'{payment_id}'"},
        headers={"Authorization": "Bearer sk_test"},
        timeout=5,
    ).json()["data"]
    return str(sorted(found, key=lambda i: i["created"])[-1]["id"])


@pytest.mark.timeout(300)
def test_3ds_succeeds_by_webhook_and_fails_into_the_retry_window_then_paid_with_another_card(stack: Stack):
    stack.start_stack(webhooks=True)
    payments = Payments(stack, stock=10)
    # Authenticated: the webhook completes it.
    order_id, payment_id, owner = place_as_owner(payments, "pm_card_threeDSecure2Required")
    waiting = payments.wait_payment(order_id, "REQUIRES_ACTION")
    assert waiting["nextAction"] is None  # the admin does not see the secret
    mine = payments.shop.request("GET", f"/orders/{order_id}/payment", owner).json()
    assert mine["nextAction"]["type"] == "USE_STRIPE_SDK" and mine["nextAction"]["clientSecret"]
    sandbox(
        stack, f"/_sandbox/payment_intents/{intent_of(payments, payment_id)}/authenticate", outcome="succeed"
    )
    payments.wait_payment(order_id, "COMPLETED", timeout=30)

    # Failed authentication: a decline; the order waits, stock held; the owner pays again.
    order_id, payment_id, owner = place_as_owner(payments, "pm_card_threeDSecure2Required")
    payments.wait_payment(order_id, "REQUIRES_ACTION")
    sandbox(
        stack, f"/_sandbox/payment_intents/{intent_of(payments, payment_id)}/authenticate", outcome="fail"
    )
    failed = payments.wait_payment(order_id, "FAILED", timeout=30)
    assert failed["failureReason"]
    order = payments.order(order_id)
    assert order["status"] == "PLACED" and order["paymentDueBy"]
    assert payments.stock() == 10 - 4
    retry = payments.shop.request(
        "POST", f"/orders/{order_id}/payment", owner, json={"paymentToken": "pm_card_visa"}
    )
    assert retry.status_code == 202, retry.text
    payments.wait_payment(order_id, "COMPLETED", timeout=60)
    stats = payments.charges(payment_id)
    assert (stats["paymentIntents"], stats["succeededCharges"]) == (2, 1)


@pytest.mark.timeout(300)
def test_a_declined_order_whose_window_passes_is_cancelled_with_its_stock_back(stack: Stack):
    stack.env.update({"PAYMENT_RETRY_WINDOW_SECONDS": "3", "RECONCILE_INTERVAL_SECONDS": "5"})
    stack.start_stack()
    payments = Payments(stack, stock=10)
    order_id, _ = payments.place(quantity=3, paymentToken="pm_card_chargeDeclined")
    payments.wait_payment(order_id, "FAILED")
    assert payments.order(order_id)["status"] == "PLACED"
    order = wait_for(
        lambda: (o := payments.order(order_id))["status"] == "CANCELLED" and o, 90, what="expiry"
    )
    assert order["cancelReason"] == "PAYMENT_FAILED"
    assert payments.stock() == 10


@pytest.mark.timeout(300)
def test_lost_webhooks_still_converge_through_the_sweep(stack: Stack):
    stack.start_stack(webhooks=True)
    payments = Payments(stack, stock=10)
    order_id, payment_id = payments.place(paymentToken="pm_card_processing")
    payments.wait_payment(order_id, "PROCESSING")
    payments.shop.sandbox_faults(dropWebhooks=50)  # every event from now on is lost
    sandbox(stack, f"/_sandbox/payment_intents/{intent_of(payments, payment_id)}/settle", outcome="succeed")
    # PAYMENT_SWEEP_SECONDS is 15 in these stacks: the sweep asks the gateway about it.
    payments.wait_payment(order_id, "COMPLETED", timeout=120)


@pytest.mark.timeout(300)
def test_partial_refunds_to_the_full_amount_a_refund_failing_at_the_gateway_and_a_dispute(stack: Stack):
    stack.start_stack(webhooks=True)
    payments = Payments(stack, stock=10, price=10.0)
    order_id, payment_id = payments.place(quantity=2)  # 20.00
    payments.wait_payment(order_id, "COMPLETED")
    admin = payments.admin
    first = payments.shop.request(
        "POST", f"/orders/{order_id}/refund", admin, json={"amount": 5, "reason": "dent"}
    )
    assert first.status_code == 202, first.text
    partly = payments.wait_payment(order_id, "PARTIALLY_REFUNDED")
    assert partly["refundedAmount"] == 5.0 and partly["refunds"][0]["status"] == "SUCCEEDED"
    assert payments.order(order_id)["status"] == "PLACED"
    too_much = payments.shop.request("POST", f"/orders/{order_id}/refund", admin, json={"amount": 15.01})
    assert too_much.status_code == 409
    rest = payments.shop.request("POST", f"/orders/{order_id}/refund", admin)
    assert rest.status_code == 202
    refunded = payments.wait_payment(order_id, "REFUNDED")
    assert refunded["refundedAmount"] == 20.0 and [r["amount"] for r in refunded["refunds"]] == [5.0, 15.0]
    assert payments.order(order_id)["cancelReason"] == "PAYMENT_REFUNDED"
    assert payments.charges(payment_id)["amountRefunded"] == 2000
    # The bank fails the second refund after it succeeded: the webhook says so, it stops counting.
    sandbox(stack, f"/_sandbox/refunds/{refunded['refunds'][1]['gatewayReference']}/fail")
    back = payments.wait_payment(order_id, "PARTIALLY_REFUNDED", timeout=30)
    assert back["refunds"][1]["status"] == "FAILED" and back["refunds"][1]["failureReason"]
    assert back["refundedAmount"] == 5.0

    # A dispute on another paid order: recorded on the payment.
    other_id, other_payment = payments.place()
    payments.wait_payment(other_id, "COMPLETED")
    sandbox(
        stack, f"/_sandbox/payment_intents/{intent_of(payments, other_payment)}/dispute", reason="fraudulent"
    )
    disputed = wait_for(lambda: (p := payments.payment(other_id))["dispute"] and p, 30, what="dispute")
    assert disputed["dispute"] == {"status": "NEEDS_RESPONSE", "reason": "FRAUDULENT", "amount": 10.0}
