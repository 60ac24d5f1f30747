"""POST /webhooks/stripe: signed with Stripe's scheme; each event once; never backwards."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.domain.orders import CANCELLED, PAYMENT_FAILED, PLACED, Order
from app.domain.payments import COMPLETED, FAILED, PENDING, GatewayEvent, Payment
from app.extensions import db
from app.payments_sandbox.webhooks import stripe_signature
from tests.shop import make_product, place_order_directly

SECRET = "whsec_sandbox"


@pytest.fixture
def order(app_ctx: Any, customer: Any) -> tuple[uuid.UUID, uuid.UUID]:
    """A PLACED order of 2 × 4.25 (850 cents): (order id, payment id)."""
    product = make_product(db.session, price="4.25", stock=5)
    placed = place_order_directly(db.session, customer.id, {product.id: 2})
    return placed.id, placed.payment.id


def event(payment_id: uuid.UUID, kind: str = "payment_intent.succeeded", **obj: Any) -> dict[str, Any]:
    body = {"id": "pi_hook", "object": "payment_intent", "amount": 850, "currency": "usd"}
    body["metadata"] = {"paymentId": str(payment_id)}
    body.update(obj)
    return {"id": f"evt_{uuid.uuid4().hex}", "object": "event", "type": kind, "data": {"object": body}}


def post(client: FlaskClient, body: dict[str, Any], *, secret: str = SECRET, age: int = 0) -> Any:
    payload = json.dumps(body).encode()
    signature = stripe_signature(payload, secret, int(time.time()) - age)
    return client.post(
        "/webhooks/stripe",
        data=payload,
        headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
    )


def payment(payment_id: uuid.UUID) -> Payment:
    db.session.rollback()
    found = db.session.get(Payment, payment_id)
    assert found is not None
    return found


def events_stored() -> int:
    db.session.rollback()
    return int(db.session.scalar(select(func.count()).select_from(GatewayEvent)) or 0)


def test_a_signed_success_completes_a_pending_payment_once(client: FlaskClient, order: Any) -> None:
    _, payment_id = order
    body = event(payment_id)
    first = post(client, body)
    assert first.status_code == 200 and first.json == {"received": True, "outcome": "PaymentCompleted"}
    assert (payment(payment_id).status, payment(payment_id).gateway_reference) == (COMPLETED, "pi_hook")
    again = post(client, body)  # a repeated delivery
    assert again.status_code == 200 and again.json["outcome"] == "DUPLICATE"


@pytest.mark.parametrize(
    "case",
    [
        {"secret": "whsec_wrong"},  # signed with another secret
        {"age": 600},  # older than 5 minutes: a replay
    ],
)
def test_a_wrong_or_stale_signature_is_a_400_problem_and_changes_nothing(
    client: FlaskClient, order: Any, case: dict[str, Any]
) -> None:
    _, payment_id = order
    response = post(client, event(payment_id), **case)
    assert response.status_code == 400
    assert response.content_type == "application/problem+json"
    assert payment(payment_id).status == PENDING
    assert events_stored() == 0


@pytest.mark.parametrize("headers", [{}, {"Stripe-Signature": "garbage"}, {"Stripe-Signature": "t=1,v1=00"}])
def test_a_missing_or_malformed_signature_is_a_400_problem(
    client: FlaskClient, order: Any, headers: dict[str, str]
) -> None:
    response = client.post("/webhooks/stripe", data=json.dumps(event(order[1])), headers=headers)
    assert response.status_code == 400 and response.content_type == "application/problem+json"
    assert payment(order[1]).status == PENDING


def test_a_signed_body_that_is_not_an_event_is_a_400_problem(client: FlaskClient, order: Any) -> None:
    payload = b"[1, 2"
    signature = stripe_signature(payload, SECRET, int(time.time()))
    response = client.post("/webhooks/stripe", data=payload, headers={"Stripe-Signature": signature})
    assert response.status_code == 400


def test_a_failure_fails_a_pending_payment_and_the_order_waits_for_a_retry(
    client: FlaskClient, order: Any
) -> None:
    order_id, payment_id = order
    body = event(
        payment_id, "payment_intent.payment_failed", last_payment_error={"decline_code": "insufficient_funds"}
    )
    assert post(client, body).json["outcome"] == "PaymentFailed"
    paid = payment(payment_id)
    assert (paid.status, paid.failure_reason) == (FAILED, "INSUFFICIENT_FUNDS")
    placed = db.session.get(Order, order_id, populate_existing=True)
    assert placed is not None and placed.status == PLACED and placed.payment_due_by is not None


def test_without_a_retry_window_a_failure_cancels_the_order(
    app: Any, client: FlaskClient, order: Any
) -> None:
    order_id, payment_id = order
    app.config["PAYMENT_RETRY_WINDOW_SECONDS"] = 0
    try:
        body = event(
            payment_id, "payment_intent.payment_failed", last_payment_error={"code": "card_declined"}
        )
        assert post(client, body).json["outcome"] == "PaymentFailed"
    finally:
        app.config["PAYMENT_RETRY_WINDOW_SECONDS"] = 900
    placed = db.session.get(Order, order_id, populate_existing=True)
    assert placed is not None and (placed.status, placed.cancel_reason) == (CANCELLED, PAYMENT_FAILED)


def test_late_events_never_move_a_payment_backwards(client: FlaskClient, order: Any) -> None:
    _, payment_id = order
    assert post(client, event(payment_id)).json["outcome"] == "PaymentCompleted"
    late_failure = event(payment_id, "payment_intent.payment_failed")
    assert post(client, late_failure).json["outcome"] == "UNCHANGED"
    assert post(client, event(payment_id)).json["outcome"] == "UNCHANGED"  # another delivery id
    assert payment(payment_id).status == COMPLETED


def test_a_success_for_a_voided_payment_asks_for_its_refund(
    client: FlaskClient, order: Any, customer: Any, token_for: Any
) -> None:
    order_id, payment_id = order
    cancelled = client.delete(f"/orders/{order_id}", headers=token_for(customer))
    assert cancelled.status_code == 204
    assert post(client, event(payment_id)).json["outcome"] == "RefundRequested"
    voided = payment(payment_id)
    assert (voided.status, voided.gateway_reference) == (FAILED, "pi_hook")


@pytest.mark.parametrize(
    "obj",
    [
        {"amount": 1},  # not what the payment is for
        {"metadata": {"paymentId": "not-a-uuid"}},
        {"metadata": {"paymentId": str(uuid.uuid4())}},
        {"metadata": None},
    ],
)
def test_events_that_do_not_match_a_payment_change_nothing(
    client: FlaskClient, order: Any, obj: dict[str, Any]
) -> None:
    response = post(client, event(order[1], **obj))
    assert response.status_code == 200 and response.json["outcome"] != "PaymentCompleted"
    assert payment(order[1]).status == PENDING


def test_other_event_types_are_acknowledged_and_ignored(client: FlaskClient, order: Any) -> None:
    response = post(client, event(order[1], "customer.created"))
    assert response.status_code == 200 and response.json["outcome"] == "IGNORED"


def test_requires_action_then_processing_then_succeeded_in_order_and_late(
    client: FlaskClient, order: Any, customer: Any, token_for: Any
) -> None:
    order_id, payment_id = order
    action = {"type": "use_stripe_sdk"}
    needs = event(
        payment_id, "payment_intent.requires_action", next_action=action, client_secret="pi_hook_secret_x"
    )
    assert post(client, needs).json["outcome"] == "PaymentActionRequired"
    shown = client.get(f"/orders/{order_id}/payment", headers=token_for(customer)).json
    assert shown["status"] == "REQUIRES_ACTION"
    assert shown["nextAction"] == {"type": "USE_STRIPE_SDK", "clientSecret": "pi_hook_secret_x"}
    assert post(client, event(payment_id, "payment_intent.processing")).json["outcome"] == "PaymentProcessing"
    late = event(payment_id, "payment_intent.requires_action", next_action=action, client_secret="s")
    assert post(client, late).json["outcome"] == "UNCHANGED"  # never back from PROCESSING
    assert post(client, event(payment_id)).json["outcome"] == "PaymentCompleted"
    assert post(client, event(payment_id, "payment_intent.processing")).json["outcome"] == "UNCHANGED"
    assert payment(payment_id).status == COMPLETED


def test_an_intent_cancelled_at_the_gateway_is_a_decline(client: FlaskClient, order: Any) -> None:
    order_id, payment_id = order
    assert post(client, event(payment_id, "payment_intent.canceled", status="canceled")).json["outcome"] == (
        "PaymentFailed"
    )
    assert (payment(payment_id).status, payment(payment_id).failure_reason) == (
        FAILED,
        "PAYMENT_INTENT_CANCELED",
    )
    placed = db.session.get(Order, order_id, populate_existing=True)
    assert placed is not None and placed.status == PLACED  # within the retry window


def test_a_dispute_is_recorded_on_the_payment_and_alerts_the_admins(
    client: FlaskClient, order: Any, admin: Any, token_for: Any
) -> None:
    order_id, payment_id = order
    post(client, event(payment_id))  # completed, gateway reference pi_hook
    body = {"id": "du_1", "object": "dispute", "amount": 850, "currency": "usd", "payment_intent": "pi_hook"}
    created = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "charge.dispute.created",
        "data": {"object": {**body, "reason": "fraudulent", "status": "needs_response"}},
    }
    assert post(client, created).json["outcome"] == "PaymentDisputed"
    shown = client.get(f"/orders/{order_id}/payment", headers=token_for(admin)).json
    assert shown["dispute"] == {"status": "NEEDS_RESPONSE", "reason": "FRAUDULENT", "amount": 8.5}
    closed = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "charge.dispute.closed",
        "data": {"object": {**body, "reason": "fraudulent", "status": "lost"}},
    }
    assert post(client, closed).json["outcome"] == "PaymentDisputeClosed"
    late = {**created, "id": f"evt_{uuid.uuid4().hex}"}
    assert post(client, late).json["outcome"] == "UNCHANGED"
    assert payment(payment_id).dispute_status == "LOST"
    db.session.rollback()
    from app.domain.outbox import OutboxMessage

    kinds = list(db.session.scalars(select(OutboxMessage.event_type).order_by(OutboxMessage.id)))
    assert kinds.count("PaymentDisputed") == 1 and kinds.count("PaymentDisputeClosed") == 1
    unknown = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "charge.dispute.created",
        "data": {
            "object": {**body, "payment_intent": "pi_nobody", "reason": "general", "status": "needs_response"}
        },
    }
    assert post(client, unknown).json["outcome"] == "UNKNOWN_PAYMENT"


def test_a_header_computed_by_stripes_own_helper_is_accepted(client: FlaskClient, order: Any) -> None:
    """The signature made the way stripe-python makes it (its ``WebhookSignature`` scheme), not by
    the sandbox's signer: the endpoint accepts it, and rejects it under another secret."""
    import stripe

    _, payment_id = order
    payload = json.dumps(event(payment_id))
    timestamp = int(time.time())
    signed = stripe.WebhookSignature._compute_signature(f"{timestamp}.{payload}", SECRET)
    headers = {"Stripe-Signature": f"t={timestamp},v1={signed}", "Content-Type": "application/json"}
    assert (
        client.post("/webhooks/stripe", data=payload, headers=headers).json["outcome"] == "PaymentCompleted"
    )
    forged = stripe.WebhookSignature._compute_signature(f"{timestamp}.{payload}", "whsec_other")
    headers["Stripe-Signature"] = f"t={timestamp},v1={forged}"
    assert client.post("/webhooks/stripe", data=payload, headers=headers).status_code == 400
