"""REQUIRES_ACTION and PROCESSING (SPEC §5.3) with the sandbox's test cards: neither cancels the
order; a gateway event or the sweep's poll ends them; a failed authentication is a decline (the
retry window); a void cancels the waiting intent."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import update

from app.adapters.gateway import StripeGateway
from app.domain import payments as pay
from app.domain.actors import Actor
from app.domain.orders import CANCELLED, PLACED
from app.extensions import db
from app.services import payments as service
from tests.integration.test_payment_services import cancel, events, order_of, payment_of
from tests.sandbox import API_KEY, Sandbox, sandbox_fixture  # noqa: F401
from tests.shop import make_product, place_order_directly

WINDOW = service.RetryPolicy(window_seconds=900, feature_ttl=0)


@pytest.fixture
def gateway(sandbox: Sandbox) -> StripeGateway:
    return StripeGateway(API_KEY, sandbox.url, timeout=5)


@pytest.fixture
def place(app_ctx: Any, customer: Any) -> Any:
    apple = make_product(db.session, price="2.50", stock=20)

    def placed(token: str) -> tuple[uuid.UUID, uuid.UUID]:
        order = place_order_directly(db.session, customer.id, {apple.id: 3})
        db.session.execute(
            update(pay.Payment).where(pay.Payment.id == order.payment.id).values(payment_token=token)
        )
        db.session.commit()
        return order.id, order.payment.id

    placed.customer = customer  # type: ignore[attr-defined]
    return placed


def charge(payment_id: uuid.UUID, gateway: StripeGateway, **kwargs: Any) -> str:
    return service.charge_payment(
        payment_id, gateway=gateway, max_attempts=3, backoff_seconds=0.1, retry=WINDOW, **kwargs
    ).status


def test_3ds_needs_the_owner_then_completes_when_authenticated(
    place: Any, gateway: StripeGateway, sandbox: Sandbox
) -> None:
    order_id, payment_id = place("pm_card_threeDSecure2Required")
    assert charge(payment_id, gateway) == pay.REQUIRES_ACTION
    payment = payment_of(payment_id)
    assert payment.status == pay.REQUIRES_ACTION and payment.next_action_type == "USE_STRIPE_SDK"
    assert (payment.client_secret or "").startswith(payment.intent_id or "?")
    assert order_of(order_id).status == PLACED
    assert events()[-1] == "PaymentActionRequired"
    # The customer authenticates (Stripe.js); the webhook is lost: the sweep's poll completes it.
    sandbox.api(
        "POST", f"/_sandbox/payment_intents/{payment.intent_id}/authenticate", json={"outcome": "succeed"}
    )
    assert charge(payment_id, gateway) == service.COMPLETED
    done = payment_of(payment_id)
    assert (done.status, done.gateway_reference, done.client_secret) == (
        pay.COMPLETED,
        payment.intent_id,
        None,
    )
    assert sandbox.stats(payment_id)["succeededCharges"] == 1


def test_a_failed_authentication_is_a_decline_with_a_retry_window(
    place: Any, gateway: StripeGateway, sandbox: Sandbox
) -> None:
    order_id, payment_id = place("pm_card_threeDSecure2Required")
    charge(payment_id, gateway)
    intent = payment_of(payment_id).intent_id
    failed = sandbox.api("POST", f"/_sandbox/payment_intents/{intent}/authenticate", json={"outcome": "fail"})
    # The webhook tells it (the event's object is the intent).
    outcome = service.handle_gateway_event(
        f"evt_{uuid.uuid4().hex}", "payment_intent.payment_failed", failed.json(), retry=WINDOW
    )
    assert outcome == "PaymentFailed"
    payment = payment_of(payment_id)
    assert payment.status == pay.FAILED and payment.failure_reason
    order = order_of(order_id)
    assert order.status == PLACED and order.payment_due_by is not None


def test_processing_then_settled_by_the_webhook_or_failed_by_the_poll(
    place: Any, gateway: StripeGateway, sandbox: Sandbox
) -> None:
    _, settled = place("pm_card_processing")
    assert charge(settled, gateway) == pay.PROCESSING
    intent = payment_of(settled).intent_id
    body = sandbox.api(
        "POST", f"/_sandbox/payment_intents/{intent}/settle", json={"outcome": "succeed"}
    ).json()
    assert (
        service.handle_gateway_event(f"evt_{uuid.uuid4().hex}", "payment_intent.succeeded", body)
        == "PaymentCompleted"
    )
    assert payment_of(settled).status == pay.COMPLETED
    # A late "processing" event never moves it back.
    assert (
        service.handle_gateway_event(f"evt_{uuid.uuid4().hex}", "payment_intent.processing", body)
        == "UNCHANGED"
    )

    order_id, failing = place("pm_card_processing")
    charge(failing, gateway)
    intent = payment_of(failing).intent_id
    sandbox.api("POST", f"/_sandbox/payment_intents/{intent}/settle", json={"outcome": "fail"})
    assert charge(failing, gateway) == service.DECLINED  # the poll
    assert payment_of(failing).status == pay.FAILED
    assert order_of(order_id).status == PLACED


def test_cancelling_an_order_waiting_for_authentication_cancels_its_intent(
    place: Any, gateway: StripeGateway, sandbox: Sandbox
) -> None:
    order_id, payment_id = place("pm_card_threeDSecure2Required")
    charge(payment_id, gateway)
    cancel(order_id, place.customer.id)
    payment = payment_of(payment_id)
    assert (payment.status, payment.failure_reason) == (pay.FAILED, "ORDER_CANCELLED")
    assert order_of(order_id).status == CANCELLED
    assert service.refund_payment(payment_id, gateway=gateway).status == service.NOTHING_CHARGED
    assert sandbox.stats(payment_id)["canceledPaymentIntents"] == 1


def test_retrying_instead_of_authenticating_abandons_the_waiting_intent(
    place: Any, gateway: StripeGateway, sandbox: Sandbox
) -> None:
    order_id, payment_id = place("pm_card_threeDSecure2Required")
    charge(payment_id, gateway)
    first_intent = payment_of(payment_id).intent_id
    # Within the window (the expiry job gives REQUIRES_ACTION the same deadline).
    from datetime import timedelta

    from app.domain.base import utcnow
    from app.domain.orders import Order

    db.session.execute(
        update(Order).where(Order.id == order_id).values(payment_due_by=utcnow() + timedelta(minutes=5))
    )
    db.session.commit()
    service.retry_payment(Actor(place.customer.id, "customer"), order_id, "pm_card_visa")
    assert charge(payment_id, gateway, abandoned_intent=first_intent) == service.COMPLETED
    stats = sandbox.stats(payment_id)
    assert (stats["paymentIntents"], stats["canceledPaymentIntents"], stats["succeededCharges"]) == (2, 1, 1)
    assert payment_of(payment_id).gateway_reference != first_intent
