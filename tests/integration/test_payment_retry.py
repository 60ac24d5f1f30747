"""The retry window (SPEC §5.3) against real Postgres and the sandbox: a decline keeps the order
PLACED with its stock held until ``paymentDueBy``; the owner pays again with another card (a new
charge round: a new PaymentIntent under new keys); an unpaid window ends in PAYMENT_FAILED."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from app.adapters.gateway import StripeGateway
from app.domain import payments as pay
from app.domain.actors import Actor
from app.domain.base import utcnow
from app.domain.errors import Forbidden, InvalidTransition, NotFound
from app.domain.orders import CANCELLED, PAYMENT_FAILED, PLACED, Order
from app.extensions import db
from app.services import payments as service
from app.services.reconciliation import run_reconciliation
from tests.integration.test_payment_services import events, order_of, payment_of, stock_of
from tests.sandbox import API_KEY, Sandbox, sandbox_fixture  # noqa: F401
from tests.shop import make_product, place_order_directly

WINDOW = service.RetryPolicy(window_seconds=900, feature_ttl=0)


@pytest.fixture
def gateway(sandbox: Sandbox) -> StripeGateway:
    return StripeGateway(API_KEY, sandbox.url, timeout=5)


@pytest.fixture
def declined(app_ctx: Any, customer: Any, gateway: StripeGateway) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    """An order of 3 apples (20 in stock) whose card was declined: (order, payment, product)."""
    apple = make_product(db.session, price="2.50", stock=20)
    order = place_order_directly(db.session, customer.id, {apple.id: 3})
    order_id, payment_id = order.id, order.payment.id
    db.session.execute(
        update(pay.Payment).where(pay.Payment.id == payment_id).values(payment_token="pm_card_chargeDeclined")
    )
    db.session.commit()
    outcome = service.charge_payment(
        payment_id, gateway=gateway, max_attempts=3, backoff_seconds=0.1, retry=WINDOW
    )
    assert outcome.status == service.DECLINED
    return order_id, payment_id, apple.id


def test_a_decline_keeps_the_order_and_its_stock_until_payment_due_by(declined: Any) -> None:
    order_id, payment_id, apple = declined
    order = order_of(order_id)
    assert order.status == PLACED and order.payment_due_by is not None
    assert timedelta(seconds=890) < order.payment_due_by - utcnow() <= timedelta(seconds=900)
    payment = payment_of(payment_id)
    assert (payment.status, payment.failure_reason) == (pay.FAILED, "GENERIC_DECLINE")
    assert stock_of(apple) == 17
    assert events()[-1] == "PaymentFailed"


def test_the_owner_pays_again_with_another_card_under_new_keys(
    declined: Any, customer: Any, gateway: StripeGateway, sandbox: Sandbox
) -> None:
    order_id, payment_id, _ = declined
    first_intent = payment_of(payment_id).intent_id
    owner = Actor(customer.id, "customer")
    payment = service.retry_payment(owner, order_id, "pm_card_mastercard", "DEBIT_CARD")
    assert isinstance(payment, pay.Payment)
    assert (payment.status, payment.charge_round, payment.method) == (pay.PENDING, 2, "DEBIT_CARD")
    assert events()[-1] == "PaymentRetried"
    outcome = service.charge_payment(
        payment_id, gateway=gateway, max_attempts=3, backoff_seconds=0.1, retry=WINDOW
    )
    assert outcome.status == service.COMPLETED
    paid = payment_of(payment_id)
    assert paid.status == pay.COMPLETED and paid.intent_id != first_intent
    stats = sandbox.stats(payment_id)
    assert (stats["paymentIntents"], stats["succeededCharges"], stats["declinedCharges"]) == (2, 1, 1)
    # Paid: no more retries.
    with pytest.raises(InvalidTransition):
        service.retry_payment(owner, order_id, "pm_card_visa")


def test_only_the_owner_may_pay_again(declined: Any, admin: Any, make_user: Any) -> None:
    order_id, _, _ = declined
    with pytest.raises(Forbidden):
        service.retry_payment(Actor(admin.id, "admin"), order_id, "pm_card_visa")
    with pytest.raises(NotFound):
        service.retry_payment(Actor(make_user("customer").id, "customer"), order_id, "pm_card_visa")


def test_a_late_event_of_the_earlier_attempt_is_ignored(declined: Any, customer: Any) -> None:
    order_id, payment_id, _ = declined
    old_intent = payment_of(payment_id).intent_id
    service.retry_payment(Actor(customer.id, "customer"), order_id, "pm_card_visa")
    late = {"id": old_intent, "metadata": {"paymentId": str(payment_id)}, "last_payment_error": {"code": "x"}}
    outcome = service.handle_gateway_event(f"evt_{uuid.uuid4().hex}", "payment_intent.payment_failed", late)
    assert outcome == "OTHER_INTENT"
    assert payment_of(payment_id).status == pay.PENDING


def test_an_unpaid_window_cancels_the_order_with_payment_failed_and_returns_the_stock(
    declined: Any, customer: Any
) -> None:
    order_id, payment_id, apple = declined
    db.session.execute(
        update(Order).where(Order.id == order_id).values(payment_due_by=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()
    with pytest.raises(InvalidTransition):
        service.retry_payment(Actor(customer.id, "customer"), order_id, "pm_card_visa")  # too late
    run = run_reconciliation(payment_timeout_seconds=900)
    assert run is not None and run.orders_expired >= 1
    order = order_of(order_id)
    assert (order.status, order.cancel_reason) == (CANCELLED, PAYMENT_FAILED)
    assert stock_of(apple) == 20
    assert payment_of(payment_id).status == pay.FAILED


def test_a_retried_payment_within_its_window_does_not_expire_as_stale(declined: Any, customer: Any) -> None:
    order_id, payment_id, _ = declined
    service.retry_payment(Actor(customer.id, "customer"), order_id, "pm_card_visa")
    # The payment row is old (created with the order), but the order is within its window.
    db.session.execute(
        update(pay.Payment)
        .where(pay.Payment.id == payment_id)
        .values(created_at=utcnow() - timedelta(seconds=3600))
    )
    db.session.commit()
    run_reconciliation(payment_timeout_seconds=900)
    assert order_of(order_id).status == PLACED


def test_without_a_window_a_decline_cancels_at_once(
    app_ctx: Any, customer: Any, gateway: StripeGateway
) -> None:
    apple = make_product(db.session, price="2.50", stock=20)
    order = place_order_directly(db.session, customer.id, {apple.id: 3})
    order_id, payment_id = order.id, order.payment.id
    db.session.execute(
        update(pay.Payment).where(pay.Payment.id == payment_id).values(payment_token="pm_card_chargeDeclined")
    )
    db.session.commit()
    service.charge_payment(payment_id, gateway=gateway, max_attempts=3, backoff_seconds=0.1)  # window 0
    found = order_of(order_id)
    assert (found.status, found.cancel_reason, found.payment_due_by) == (CANCELLED, PAYMENT_FAILED, None)
    assert stock_of(apple.id) == 20
