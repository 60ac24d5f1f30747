"""charge_payment / refund_payment against real Postgres and the sandbox: once, and never a
cancelled order whose charge stands."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select, update

from app.adapters.gateway import ChargeResult, StripeGateway
from app.domain import payments as pay
from app.domain.actors import Actor
from app.domain.base import utcnow
from app.domain.catalogue import Product, StockMovement
from app.domain.errors import Forbidden, InvalidTransition
from app.domain.orders import (
    CANCELLED,
    CANCELLED_BY_CUSTOMER,
    PAYMENT_FAILED,
    PAYMENT_REFUNDED,
    PLACED,
    SHIPPED,
    Order,
)
from app.domain.outbox import OutboxMessage
from app.domain.payments import Payment
from app.extensions import db
from app.services import payments as service
from app.services.cancellation import apply_cancellation
from app.services.unit_of_work import UnitOfWork
from tests.sandbox import API_KEY, Sandbox, sandbox_fixture  # noqa: F401
from tests.shop import make_product, place_order_directly

MAX_ATTEMPTS = 3


@pytest.fixture
def gateway(sandbox: Sandbox) -> StripeGateway:
    return StripeGateway(API_KEY, sandbox.url, timeout=5)


@pytest.fixture
def shop(app_ctx: Flask, customer: Any) -> Any:
    """Place orders of 3 apples (2.50 each, 20 in stock) paid with ``token``: (order_id, payment_id)."""
    apple = make_product(db.session, price="2.50", stock=20)

    def place(token: str = "pm_card_visa") -> tuple[uuid.UUID, uuid.UUID]:  # noqa: S107
        order = place_order_directly(db.session, customer.id, {apple.id: 3})
        order_id, payment_id = order.id, order.payment.id
        db.session.execute(update(Payment).where(Payment.id == payment_id).values(payment_token=token))
        db.session.commit()
        return order_id, payment_id

    place.apple_id = apple.id  # type: ignore[attr-defined]
    place.customer = customer  # type: ignore[attr-defined]
    return place


def charge(payment_id: uuid.UUID, gateway: Any, max_attempts: int = MAX_ATTEMPTS) -> service.PaymentOutcome:
    return service.charge_payment(payment_id, gateway=gateway, max_attempts=max_attempts, backoff_seconds=0.1)


def payment_of(payment_id: uuid.UUID) -> Payment:
    db.session.rollback()
    found = db.session.get(Payment, payment_id, populate_existing=True)
    assert found is not None
    return found


def order_of(order_id: uuid.UUID) -> Order:
    db.session.rollback()
    found = db.session.get(Order, order_id, populate_existing=True)
    assert found is not None
    return found


def stock_of(product_id: uuid.UUID) -> int:
    db.session.rollback()
    return int(db.session.scalar(select(Product.stock).where(Product.id == product_id)) or 0)


def ledger_of(product_id: uuid.UUID) -> int:
    return int(
        db.session.scalar(
            select(func.coalesce(func.sum(StockMovement.delta), 0)).where(
                StockMovement.product_id == product_id
            )
        )
        or 0
    )


def events() -> list[str]:
    db.session.rollback()
    return list(db.session.scalars(select(OutboxMessage.event_type).order_by(OutboxMessage.id)))


def cancel(order_id: uuid.UUID, user_id: uuid.UUID) -> None:
    with UnitOfWork() as uow:
        order = apply_cancellation(uow, order_id, Actor(user_id, "customer"), CANCELLED_BY_CUSTOMER)
        uow.commit()
    assert order.id == order_id


# ---- charging ---------------------------------------------------------------------------------


def test_a_charge_completes_the_payment(shop: Any, gateway: StripeGateway, sandbox: Sandbox) -> None:
    order_id, payment_id = shop()
    assert charge(payment_id, gateway).status == service.COMPLETED
    payment = payment_of(payment_id)
    assert (payment.status, payment.attempts, payment.failure_reason) == (pay.COMPLETED, 1, None)
    assert payment.gateway_reference and payment.gateway_reference.startswith("pi_")
    assert order_of(order_id).status == PLACED
    assert events()[-1] == "PaymentCompleted"
    assert sandbox.stats(payment_id)["amountCaptured"] == 750


def test_charging_a_payment_again_charges_nothing_more(
    shop: Any, gateway: StripeGateway, sandbox: Sandbox
) -> None:
    _, payment_id = shop()
    charge(payment_id, gateway)
    assert charge(payment_id, gateway).status == service.SKIPPED
    assert sandbox.stats(payment_id)["charges"] == 1
    assert events().count("PaymentCompleted") == 1


def test_concurrent_charge_tasks_for_one_payment_charge_it_once(
    app: Flask, shop: Any, gateway: StripeGateway, sandbox: Sandbox
) -> None:
    _, payment_id = shop()
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        with app.app_context():
            barrier.wait()
            outcomes.append(charge(payment_id, gateway).status)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count(service.COMPLETED) == 1
    assert set(outcomes) <= {service.COMPLETED, service.SKIPPED}
    assert payment_of(payment_id).status == pay.COMPLETED
    assert sandbox.stats(payment_id)["charges"] == 1
    assert events().count("PaymentCompleted") == 1


def test_a_declined_card_fails_the_payment_and_cancels_the_order_returning_its_stock(
    shop: Any, gateway: StripeGateway
) -> None:
    order_id, payment_id = shop("pm_card_chargeDeclinedInsufficientFunds")
    assert stock_of(shop.apple_id) == 17
    assert charge(payment_id, gateway).status == service.DECLINED
    payment = payment_of(payment_id)
    assert (payment.status, payment.failure_reason, payment.gateway_reference) == (
        pay.FAILED,
        "INSUFFICIENT_FUNDS",
        None,
    )
    order = order_of(order_id)
    assert (order.status, order.cancel_reason) == (CANCELLED, PAYMENT_FAILED)
    assert stock_of(shop.apple_id) == 20 == ledger_of(shop.apple_id)
    assert {"PaymentFailed", "OrderCancelled"} <= set(events())


def test_a_payment_method_the_gateway_does_not_know_fails_the_payment(
    shop: Any, gateway: StripeGateway
) -> None:
    order_id, payment_id = shop("pm_card_unheard_of")
    assert charge(payment_id, gateway).status == service.DECLINED
    assert payment_of(payment_id).failure_reason == "RESOURCE_MISSING"
    assert order_of(order_id).cancel_reason == PAYMENT_FAILED


def test_an_order_cancelled_before_its_charge_is_never_charged(
    shop: Any, gateway: StripeGateway, sandbox: Sandbox
) -> None:
    order_id, payment_id = shop()
    cancel(order_id, shop.customer.id)
    assert charge(payment_id, gateway).status == service.SKIPPED
    payment = payment_of(payment_id)
    assert (payment.status, payment.failure_reason, payment.attempts) == (pay.FAILED, "ORDER_CANCELLED", 0)
    assert sandbox.stats(payment_id)["charges"] == 0


class VoidBeforeConfirm:
    """The real gateway; the order is cancelled, and its void (the stored intent cancelled at the
    gateway) done, while the worker's confirm is still on its way: the slow-gateway race."""

    def __init__(self, gateway: StripeGateway, user_id: uuid.UUID) -> None:
        self.gateway = gateway
        self.user_id = user_id
        self.void_outcome: service.PaymentOutcome | None = None

    def confirm_intent(self, payment_id: uuid.UUID, *args: Any) -> ChargeResult:
        cancel(payment_of(payment_id).order_id, self.user_id)
        self.void_outcome = service.refund_payment(payment_id, gateway=self.gateway)
        return self.gateway.confirm_intent(payment_id, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.gateway, name)


def test_a_confirm_arriving_after_the_void_is_refused_and_nothing_is_charged(
    shop: Any, gateway: StripeGateway, sandbox: Sandbox
) -> None:
    _, payment_id = shop()
    racing = VoidBeforeConfirm(gateway, shop.customer.id)
    outcome = charge(payment_id, racing)
    assert racing.void_outcome == service.PaymentOutcome(service.NOTHING_CHARGED)
    assert outcome.status == service.SKIPPED  # the gateway refused the confirm; the payment is voided
    payment = payment_of(payment_id)
    assert (payment.status, payment.failure_reason) == (pay.FAILED, "ORDER_CANCELLED")
    assert payment.intent_id and payment.intent_id.startswith("pi_")
    assert payment.gateway_reference is None and payment.refund_reference is None
    stats = sandbox.stats(str(payment_id))
    assert (stats["paymentIntents"], stats["canceledPaymentIntents"], stats["succeededCharges"]) == (1, 1, 0)
    assert stock_of(shop.apple_id) == 20 == ledger_of(shop.apple_id)
    # Voiding again (a redelivered task) changes nothing and charges nothing.
    assert service.refund_payment(payment_id, gateway=gateway).status == service.NOTHING_CHARGED
    assert sandbox.stats(str(payment_id))["succeededCharges"] == 0


def test_the_void_of_a_charge_that_won_the_race_refunds_it_once(
    shop: Any, gateway: StripeGateway, sandbox: Sandbox
) -> None:
    order_id, payment_id = shop()
    intent_id = gateway.create_intent(payment_id, order_id, Decimal("7.50"), "USD")
    with UnitOfWork() as uow:
        uow.payments.start_attempt(payment_id)
        uow.payments.store_intent(payment_id, intent_id)
        uow.commit()
    gateway.confirm_intent(payment_id, intent_id, Decimal("7.50"), "USD", "pm_card_visa")  # answer lost
    cancel(order_id, shop.customer.id)
    assert service.refund_payment(payment_id, gateway=gateway).status == service.REFUNDED
    assert service.refund_payment(payment_id, gateway=gateway).status == service.SKIPPED
    payment = payment_of(payment_id)
    assert (payment.status, payment.gateway_reference) == (pay.REFUNDED, intent_id)
    stats = sandbox.stats(str(payment_id))
    assert (stats["succeededCharges"], stats["amountCaptured"], stats["amountRefunded"]) == (1, 750, 750)


def test_a_charge_stores_its_intent_before_confirming_and_replays_it(
    shop: Any, gateway: StripeGateway, sandbox: Sandbox
) -> None:
    _, payment_id = shop()
    assert charge(payment_id, gateway).status == service.COMPLETED
    payment = payment_of(payment_id)
    assert payment.intent_id == payment.gateway_reference
    with UnitOfWork() as uow:  # a redelivered task on a payment put back to PENDING replays the charge
        uow.session.execute(update(Payment).where(Payment.id == payment_id).values(status=pay.PENDING))
        uow.commit()
    assert charge(payment_id, gateway).status == service.COMPLETED
    stats = sandbox.stats(str(payment_id))
    assert (stats["paymentIntents"], stats["succeededCharges"]) == (1, 1)


class CancelWhileCharging:
    """The real gateway; the customer cancels the order while the charge is on its way."""

    def __init__(self, gateway: StripeGateway, user_id: uuid.UUID) -> None:
        self.gateway = gateway
        self.user_id = user_id

    def confirm_intent(self, payment_id: uuid.UUID, *args: Any) -> ChargeResult:
        cancel(payment_of(payment_id).order_id, self.user_id)
        return self.gateway.confirm_intent(payment_id, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.gateway, name)


def test_an_order_cancelled_while_its_charge_is_in_flight_gets_the_charge_refunded(
    shop: Any, gateway: StripeGateway, sandbox: Sandbox
) -> None:
    order_id, payment_id = shop()
    outcome = charge(payment_id, CancelWhileCharging(gateway, shop.customer.id))
    assert outcome.status == service.REFUNDED
    payment = payment_of(payment_id)
    assert payment.status == pay.REFUNDED
    assert (
        payment.gateway_reference and payment.refund_reference and payment.refund_reference.startswith("re_")
    )
    stats = sandbox.stats(payment_id)
    assert (stats["succeededCharges"], stats["amountCaptured"], stats["amountRefunded"]) == (1, 750, 750)
    order = order_of(order_id)
    assert (order.status, order.cancel_reason) == (CANCELLED, CANCELLED_BY_CUSTOMER)
    assert stock_of(shop.apple_id) == 20 == ledger_of(shop.apple_id)
    assert "PaymentRefunded" in events()


def test_a_transient_failure_keeps_the_payment_pending_and_asks_for_a_retry(
    shop: Any, gateway: StripeGateway, sandbox: Sandbox
) -> None:
    _, payment_id = shop()
    sandbox.faults(failNext=1, status=503)
    outcome = charge(payment_id, gateway)
    assert outcome.status == service.RETRY and outcome.retry_in is not None
    assert (payment_of(payment_id).status, payment_of(payment_id).attempts) == (pay.PENDING, 1)
    assert charge(payment_id, gateway).status == service.COMPLETED
    assert payment_of(payment_id).attempts == 2
    assert sandbox.stats(payment_id)["charges"] == 1


def test_when_the_attempts_run_out_the_payment_stays_pending(
    shop: Any, gateway: StripeGateway, sandbox: Sandbox
) -> None:
    order_id, payment_id = shop()
    sandbox.faults(failNext=10, status=500)
    outcomes = [charge(payment_id, gateway, max_attempts=2).status for _ in range(2)]
    assert outcomes == [service.RETRY, service.GAVE_UP]
    payment = payment_of(payment_id)
    assert (payment.status, payment.attempts, payment.failure_reason) == (pay.PENDING, 2, None)
    assert order_of(order_id).status == PLACED


# ---- refunding --------------------------------------------------------------------------------


def refund(payment_id: uuid.UUID, gateway: Any) -> service.PaymentOutcome:
    return service.refund_payment(payment_id, gateway=gateway, max_attempts=MAX_ATTEMPTS, backoff_seconds=0.1)


def test_refunding_a_completed_payment_of_a_placed_order_refunds_it_and_cancels_the_order(
    shop: Any, gateway: StripeGateway, sandbox: Sandbox
) -> None:
    order_id, payment_id = shop()
    charge(payment_id, gateway)
    assert refund(payment_id, gateway).status == service.REFUNDED
    payment = payment_of(payment_id)
    assert payment.status == pay.REFUNDED and payment.refund_reference
    order = order_of(order_id)
    assert (order.status, order.cancel_reason) == (CANCELLED, PAYMENT_REFUNDED)
    assert stock_of(shop.apple_id) == 20 == ledger_of(shop.apple_id)
    assert sandbox.stats(payment_id)["amountRefunded"] == 750
    assert "PaymentRefunded" in events()


def test_refunding_a_shipped_order_keeps_it_shipped(shop: Any, gateway: StripeGateway) -> None:
    order_id, payment_id = shop()
    charge(payment_id, gateway)
    db.session.execute(update(Order).where(Order.id == order_id).values(status=SHIPPED))
    db.session.commit()
    assert refund(payment_id, gateway).status == service.REFUNDED
    assert payment_of(payment_id).status == pay.REFUNDED
    assert order_of(order_id).status == SHIPPED


def test_a_refund_is_made_once(shop: Any, gateway: StripeGateway, sandbox: Sandbox) -> None:
    _, payment_id = shop()
    charge(payment_id, gateway)
    refund(payment_id, gateway)
    assert refund(payment_id, gateway).status == service.SKIPPED
    assert sandbox.stats(payment_id)["refunds"] == 1


def test_a_pending_payment_is_not_refunded(shop: Any, gateway: StripeGateway, sandbox: Sandbox) -> None:
    _, payment_id = shop()
    assert refund(payment_id, gateway).status == service.SKIPPED
    assert payment_of(payment_id).status == pay.PENDING
    assert sandbox.stats()["apiRequests"] == 0


def test_cancelling_a_paid_order_requests_the_refund_that_the_worker_makes(
    shop: Any, gateway: StripeGateway, sandbox: Sandbox
) -> None:
    order_id, payment_id = shop()
    charge(payment_id, gateway)
    cancel(order_id, shop.customer.id)
    assert "RefundRequested" in events()
    assert refund(payment_id, gateway).status == service.REFUNDED
    assert payment_of(payment_id).status == pay.REFUNDED
    assert order_of(order_id).cancel_reason == CANCELLED_BY_CUSTOMER
    assert sandbox.stats(payment_id)["amountRefunded"] == 750


def test_a_transient_refund_failure_asks_for_a_retry(
    shop: Any, gateway: StripeGateway, sandbox: Sandbox
) -> None:
    _, payment_id = shop()
    charge(payment_id, gateway)
    sandbox.faults(failNext=1, status=502)
    outcome = refund(payment_id, gateway)
    assert outcome.status == service.RETRY and outcome.retry_in is not None
    assert payment_of(payment_id).status == pay.COMPLETED
    assert refund(payment_id, gateway).status == service.REFUNDED


class SlowConfirm:
    """The intent is created promptly; the confirm's answer comes after the client's timeout."""

    def __init__(self, gateway: StripeGateway, sandbox: Sandbox) -> None:
        self.gateway = gateway
        self.sandbox = sandbox

    def confirm_intent(self, *args: Any) -> ChargeResult:
        self.sandbox.faults(delayMs=1500)
        return StripeGateway(API_KEY, self.sandbox.url, timeout=0.3).confirm_intent(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.gateway, name)


def test_a_voided_payment_whose_created_intent_timed_out_is_cancelled_and_never_charged(
    shop: Any, gateway: StripeGateway, sandbox: Sandbox
) -> None:
    order_id, payment_id = shop()
    sandbox.faults(delayMs=1500)
    impatient = StripeGateway(API_KEY, sandbox.url, timeout=0.3)
    assert charge(payment_id, impatient).status == service.RETRY  # the creation's answer was lost
    sandbox.clear_faults()
    cancel(order_id, shop.customer.id)
    # No intent id was stored: the charge is looked up by its metadata, and there is none.
    assert refund(payment_id, gateway).status == service.NOTHING_CHARGED
    assert sandbox.stats(payment_id)["succeededCharges"] == 0


def test_a_voided_payment_whose_unanswered_attempt_was_charged_is_found_and_refunded(
    shop: Any, gateway: StripeGateway, sandbox: Sandbox
) -> None:
    order_id, payment_id = shop()
    assert charge(payment_id, SlowConfirm(gateway, sandbox)).status == service.RETRY  # the answer was lost
    sandbox.clear_faults()
    cancel(order_id, shop.customer.id)
    assert payment_of(payment_id).status == pay.FAILED
    assert refund(payment_id, gateway).status == service.REFUNDED  # the cancel is refused: refunded
    payment = payment_of(payment_id)
    assert payment.status == pay.REFUNDED and payment.gateway_reference and payment.refund_reference
    assert sandbox.stats(payment_id)["amountRefunded"] == 750


def test_a_voided_payment_whose_attempt_never_reached_the_gateway_stays_failed(
    shop: Any, gateway: StripeGateway, sandbox: Sandbox
) -> None:
    order_id, payment_id = shop()
    sandbox.faults(failNext=1, status=503)
    charge(payment_id, gateway)
    cancel(order_id, shop.customer.id)
    assert refund(payment_id, gateway).status == service.NOTHING_CHARGED
    payment = payment_of(payment_id)
    assert (payment.status, payment.failure_reason) == (pay.FAILED, "ORDER_CANCELLED")
    assert sandbox.stats(payment_id)["charges"] == 0


# ---- admin refunds and the sweep ----------------------------------------------------------------


def test_an_admin_refund_request_is_queued_through_the_outbox(
    shop: Any, gateway: StripeGateway, admin: Any
) -> None:
    order_id, payment_id = shop()
    charge(payment_id, gateway)
    payment = service.request_refund(Actor(admin.id, "admin"), order_id)
    assert (payment.id, payment.status) == (payment_id, pay.COMPLETED)
    assert events()[-1] == "RefundRequested"


def test_only_a_completed_payment_can_be_refunded(shop: Any, admin: Any) -> None:
    order_id, _ = shop()
    with pytest.raises(InvalidTransition):
        service.request_refund(Actor(admin.id, "admin"), order_id)


def test_customers_cannot_ask_for_refunds(shop: Any) -> None:
    order_id, _ = shop()
    with pytest.raises(Forbidden):
        service.request_refund(Actor(shop.customer.id, "customer"), order_id)


def _age(payment_id: uuid.UUID, seconds: int, **values: Any) -> None:
    then = utcnow() - timedelta(seconds=seconds)
    db.session.execute(update(Payment).where(Payment.id == payment_id).values(updated_at=then, **values))
    db.session.commit()


def test_the_sweep_queues_charges_whose_task_was_lost_and_only_those(
    shop: Any, gateway: StripeGateway
) -> None:
    _, lost = shop()
    _, fresh = shop()
    _, exhausted = shop()
    _, completed = shop()
    _age(lost, 600)
    _age(exhausted, 600, attempts=MAX_ATTEMPTS)
    charge(completed, gateway)
    _age(completed, 600)
    assert service.sweep_pending_payments(max_attempts=MAX_ATTEMPTS) == {"charges": 1, "refunds": 0}
    assert fresh


def test_the_sweep_queues_refunds_that_were_never_made(shop: Any, gateway: StripeGateway) -> None:
    order_id, payment_id = shop()
    charge(payment_id, gateway)
    cancel(order_id, shop.customer.id)
    db.session.execute(
        update(Order).where(Order.id == order_id).values(updated_at=utcnow() - timedelta(hours=1))
    )
    _age(payment_id, 3600)
    assert service.sweep_pending_payments(max_attempts=MAX_ATTEMPTS) == {"charges": 0, "refunds": 1}


def test_a_charge_with_an_amount_in_cents_is_exact(
    shop: Any, gateway: StripeGateway, sandbox: Sandbox
) -> None:
    _, payment_id = shop()
    db.session.execute(update(Payment).where(Payment.id == payment_id).values(amount=Decimal("1234.56")))
    db.session.commit()
    charge(payment_id, gateway)
    assert sandbox.stats(payment_id)["amountCaptured"] == 123456
