"""A worker killed (SIGKILL) while its refund is at the gateway: the refund is made exactly once.

The real processes (web, worker, beat, the payment sandbox, an SMTP server on loopback). The
sandbox makes the refund at once and holds only its answer (fault ``delayRefundMs``), so the
worker is killed after the gateway refunded and before it heard so — the refund row stays PENDING
with no gateway reference. A new worker starts; the sweep finds the refund idle for
``PAYMENT_SWEEP_SECONDS`` and sends it again under the same idempotency key
(``refund-<refundId>``): the sandbox replays its first answer. What must hold afterwards, read
from the sandbox's own records and from our API: one refund at the gateway for that refund id, one
SUCCEEDED ``refunds[]`` entry, ``refundedAmount`` and the payment's status right, the rest of the
payment still refundable to the cent (no double counting), and each customer e-mail sent once.
(The same failure one layer down, without processes: tests/integration/test_refunds.py.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from app.devtools.smtp_sink import SmtpSink
from tests.e2e.conftest import Stack, wait_for
from tests.e2e.test_payments import Payments

pytestmark = pytest.mark.e2e

# Far longer than the test needs to see the refund made and kill the worker, and shorter than
# the worker's gateway timeout, so the worker is still waiting for the answer when it is killed.
HELD_ANSWER_MS = 60_000
GATEWAY_TIMEOUT_SECONDS = "90"


@pytest.fixture
def sink(stack: Stack) -> Iterator[SmtpSink]:
    with SmtpSink(port=stack.smtp_port) as server:
        yield server


def gateway_refunds(stack: Stack, intent_id: str) -> list[dict[str, Any]]:
    """The sandbox's refunds of one PaymentIntent, through its Stripe API (``GET /v1/refunds``)."""
    response = requests.get(
        f"{stack.sandbox_url}/v1/refunds",
        params={"payment_intent": intent_id, "limit": 100},
        headers={"Authorization": "Bearer sk_test"},
        timeout=5,
    )
    response.raise_for_status()
    return list(response.json()["data"])


def notifications(payments: Payments, user_id: str, token: str) -> list[dict[str, Any]]:
    response = payments.shop.request("GET", f"/users/{user_id}/notifications?pageSize=100", token)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def all_sent(payments: Payments, user_id: str, token: str, events: set[str]) -> list[dict[str, Any]] | None:
    """The user's notifications once those of ``events`` exist and every one is SENT."""
    items = notifications(payments, user_id, token)
    if {n["event"] for n in items} >= events and all(n["status"] == "SENT" for n in items):
        return items
    return None


@pytest.mark.timeout(240)
def test_a_worker_killed_while_its_refund_is_at_the_gateway_refunds_exactly_once(
    stack: Stack, sink: SmtpSink
):
    stack.env.update(
        PAYMENT_SWEEP_SECONDS="10",  # the least it may be: the lost refund is sent again after 10 s idle
        PAYMENT_GATEWAY_TIMEOUT_SECONDS=GATEWAY_TIMEOUT_SECONDS,
    )
    stack.start_stack()
    payments = Payments(stack, stock=10, price=10.0)
    user_id, owner = payments.shop.sign_up()
    cart_id = payments.shop.fill_cart(user_id, owner, payments.product, 2)
    placed = payments.shop.checkout(user_id, owner, cart_id)
    assert placed.status_code == 201, placed.text
    order_id, payment_id = placed.json()["orderId"], placed.json()["payment"]["paymentId"]
    paid = payments.wait_payment(order_id, "COMPLETED")
    intent_id = paid["gatewayReference"]
    assert paid["amount"] == 20.0 and intent_id.startswith("pi_")
    # The e-mails so far are out, so the kill below loses nothing but the refund in flight.
    wait_for(
        lambda: all_sent(payments, user_id, owner, {"OrderPlaced", "PaymentCompleted"}),
        60,
        interval=0.25,
        what="the order's first e-mails",
    )

    payments.shop.sandbox_faults(delayRefundMs=HELD_ANSWER_MS)
    asked = payments.shop.request(
        "POST", f"/orders/{order_id}/refund", payments.admin, json={"amount": 5, "reason": "dent"}
    )
    assert asked.status_code == 202, asked.text
    [requested] = asked.json()["refunds"]
    refund_id = requested["refundId"]
    assert (requested["status"], requested["amount"]) == ("PENDING", 5.0)

    # The gateway made the refund; its answer is held, so the worker is waiting for it: kill it.
    [made] = wait_for(
        lambda: gateway_refunds(stack, intent_id),
        30,
        interval=0.05,
        what="the refund made at the sandbox",
    )
    stack.kill("worker")
    payments.shop.sandbox_faults()  # what comes next is answered at once (a held answer stays held)
    assert (made["amount"], made["status"], made["metadata"]["refundId"]) == (500, "succeeded", refund_id)
    lost = payments.payment(order_id)
    assert lost["status"] == "COMPLETED" and lost["refundedAmount"] == 0.0
    [pending] = lost["refunds"]
    # The worker never heard the gateway's answer: no reference recorded, still PENDING.
    assert (pending["refundId"], pending["status"], pending["gatewayReference"]) == (
        refund_id,
        "PENDING",
        None,
    )

    stack.start("worker")
    stack.wait_worker(occurrence=2)
    # The sweep sends the idle refund again under its key; the sandbox replays the first answer.
    payment = payments.wait_payment(order_id, "PARTIALLY_REFUNDED", timeout=60)
    assert payment["refundedAmount"] == 5.0
    [settled] = payment["refunds"]
    assert (settled["refundId"], settled["status"], settled["amount"], settled["gatewayReference"]) == (
        refund_id,
        "SUCCEEDED",
        5.0,
        made["id"],
    )
    assert payments.order(order_id)["status"] == "PLACED"  # a partial refund leaves the order alone
    # Exactly one refund at the gateway for this payment and this refund id.
    assert [r["id"] for r in gateway_refunds(stack, intent_id)] == [made["id"]]
    stats = payments.charges(payment_id)
    assert (stats["succeededCharges"], stats["refunds"], stats["amountRefunded"]) == (1, 1, 500)

    # The books still add up to the cent: exactly the rest (15.00) is refundable, and refunded.
    too_much = payments.shop.request(
        "POST", f"/orders/{order_id}/refund", payments.admin, json={"amount": 15.01}
    )
    assert too_much.status_code == 409, too_much.text
    rest = payments.shop.request("POST", f"/orders/{order_id}/refund", payments.admin)
    assert rest.status_code == 202, rest.text
    refunded = payments.wait_payment(order_id, "REFUNDED")
    assert refunded["refundedAmount"] == 20.0
    assert [(r["amount"], r["status"]) for r in refunded["refunds"]] == [
        (5.0, "SUCCEEDED"),
        (15.0, "SUCCEEDED"),
    ]
    order = payments.order(order_id)
    assert (order["status"], order["cancelReason"]) == ("CANCELLED", "PAYMENT_REFUNDED")
    assert sorted(r["amount"] for r in gateway_refunds(stack, intent_id)) == [500, 1500]
    stats = payments.charges(payment_id)
    assert (stats["refunds"], stats["amountRefunded"], stats["amountCaptured"]) == (2, 2000, 2000)
    assert payments.stock() == 10

    # Each moment told the customer once: one notification per event, each e-mailed once.
    moments = {
        "OrderPlaced",
        "PaymentCompleted",
        "PaymentPartiallyRefunded",
        "PaymentRefunded",
        "OrderCancelled",
    }
    items = wait_for(
        lambda: all_sent(payments, user_id, owner, moments), 60, interval=0.25, what="every e-mail SENT"
    )
    events = sorted(n["event"] for n in items)
    assert len(events) == len(set(events)) and set(events) >= moments, events
    address = payments.shop.request("GET", f"/users/{user_id}", owner).json()["email"]
    mails = [m for m in sink.received if m.rcpt_tos == [address]]
    assert len(mails) == len(items), [m.subject for m in mails]
    assert len({m.message_id for m in mails}) == len(items)
