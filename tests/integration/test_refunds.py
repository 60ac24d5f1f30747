"""The one refund path (``services.refunds`` + the worker's ``refund_payment``) against real
Postgres and the sandbox: partial refunds to the full amount, each once at the gateway; pending
refunds settled by polling; failures recorded, the admins alerted, never retried."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select, update

from app.adapters.gateway import StripeGateway
from app.domain import payments as pay
from app.domain.base import utcnow
from app.domain.errors import InvalidTransition, ValidationFailed
from app.domain.events import Event
from app.domain.orders import CANCELLED, PAYMENT_REFUNDED, PLACED
from app.domain.outbox import OutboxMessage
from app.domain.payments import Refund
from app.extensions import db
from app.services import payments as service
from app.services import refunds
from app.services.dispatch import EventContext
from app.services.notifications import alert_admins
from app.services.unit_of_work import UnitOfWork
from tests.integration.test_payment_services import cancel, charge, events, order_of, payment_of
from tests.sandbox import API_KEY, Sandbox, sandbox_fixture  # noqa: F401
from tests.shop import make_product, place_order_directly


@pytest.fixture
def gateway(sandbox: Sandbox) -> StripeGateway:
    return StripeGateway(API_KEY, sandbox.url, timeout=5)


@pytest.fixture
def shop(app_ctx: Any, customer: Any) -> Any:
    """Place orders of 3 apples (2.50 each): (order_id, payment_id)."""
    apple = make_product(db.session, price="2.50", stock=20)

    def place() -> tuple[uuid.UUID, uuid.UUID]:
        order = place_order_directly(db.session, customer.id, {apple.id: 3})
        return order.id, order.payment.id

    place.customer = customer  # type: ignore[attr-defined]
    return place


def refunds_of(payment_id: uuid.UUID) -> list[Refund]:
    db.session.rollback()
    stmt = select(Refund).where(Refund.payment_id == payment_id).order_by(Refund.created_at)
    return list(db.session.scalars(stmt.execution_options(populate_existing=True)))


def ask(payment_id: uuid.UUID, amount: str | None, reason: str | None = None) -> uuid.UUID:
    """What an admin's request or a return does: a refund in the caller's unit of work."""
    with UnitOfWork() as uow:
        refund = refunds.request_refund(uow, payment_id, Decimal(amount) if amount else None, reason)
        refund_id = refund.id
        uow.commit()
    return refund_id


def send(payment_id: uuid.UUID, refund_id: uuid.UUID | None, gateway: Any) -> str:
    return service.refund_payment(payment_id, refund_id=refund_id, gateway=gateway).status


def test_partial_refunds_up_to_the_full_amount_each_once_at_the_gateway(
    shop: Any, gateway: StripeGateway, sandbox: Sandbox
) -> None:
    order_id, payment_id = shop()  # 7.50
    charge(payment_id, gateway)
    first = ask(payment_id, "2.50", "one apple was bruised")
    assert send(payment_id, first, gateway) == service.REFUNDED
    assert send(payment_id, first, gateway) == service.SKIPPED  # a repeat sends nothing
    payment = payment_of(payment_id)
    assert (payment.status, payment.refunded_amount) == (pay.PARTIALLY_REFUNDED, Decimal("2.50"))
    assert order_of(order_id).status == PLACED  # a partial refund leaves the order alone
    assert sandbox.stats(payment_id)["amountRefunded"] == 250
    with pytest.raises(InvalidTransition):
        ask(payment_id, "5.01")
    rest = ask(payment_id, None)
    assert send(payment_id, rest, gateway) == service.REFUNDED
    payment = payment_of(payment_id)
    assert (payment.status, payment.refunded_amount) == (pay.REFUNDED, Decimal("7.50"))
    [one, two] = refunds_of(payment_id)
    assert (one.amount, one.status, one.reason) == (Decimal("2.50"), pay.R_SUCCEEDED, "one apple was bruised")
    assert (two.amount, two.status) == (Decimal("5.00"), pay.R_SUCCEEDED)
    assert one.gateway_reference != two.gateway_reference and (one.gateway_reference or "").startswith("re_")
    assert payment.refund_reference == two.gateway_reference
    # A full refund of an order not shipped cancels it, as in release 1.
    order = order_of(order_id)
    assert (order.status, order.cancel_reason) == (CANCELLED, PAYMENT_REFUNDED)
    stats = sandbox.stats(payment_id)
    assert (stats["refunds"], stats["amountRefunded"]) == (2, 750)
    said = events()
    assert said.count("RefundSucceeded") == 2 and "PaymentPartiallyRefunded" in said
    assert said.count("PaymentRefunded") == 1
    with pytest.raises(InvalidTransition):
        ask(payment_id, None)


@pytest.mark.parametrize("amount", ["0", "-2.00", "0.005"])
def test_an_amount_that_is_not_positive_is_refused(shop: Any, gateway: StripeGateway, amount: str) -> None:
    _, payment_id = shop()
    charge(payment_id, gateway)
    with pytest.raises(ValidationFailed):
        ask(payment_id, amount)
    assert refunds_of(payment_id) == []


def test_a_payment_that_took_nothing_cannot_be_refunded(shop: Any) -> None:
    _, payment_id = shop()
    with pytest.raises(InvalidTransition):
        ask(payment_id, None)


def test_a_worker_that_died_after_the_gateway_refunded_refunds_exactly_once(
    shop: Any, gateway: StripeGateway, sandbox: Sandbox
) -> None:
    _, payment_id = shop()
    charge(payment_id, gateway)
    refund_id = ask(payment_id, "1.00")
    payment = payment_of(payment_id)
    # The refund reached the gateway, then the worker died before recording the answer.
    gateway.refund(payment_id, payment.gateway_reference or "", Decimal("1.00"), "USD", refund_id=refund_id)
    assert send(payment_id, refund_id, gateway) == service.REFUNDED  # the same key: replayed
    assert (sandbox.stats(payment_id)["refunds"], sandbox.stats(payment_id)["amountRefunded"]) == (1, 100)
    assert payment_of(payment_id).refunded_amount == Decimal("1.00")


def test_a_pending_refund_is_settled_by_polling_and_a_failed_one_is_never_retried(
    shop: Any, gateway: StripeGateway, sandbox: Sandbox, admin: Any
) -> None:
    _, payment_id = shop()
    charge(payment_id, gateway)
    refund_id = ask(payment_id, "3.00")
    payment = payment_of(payment_id)
    # The gateway took it but leaves it pending (a slow bank); the worker recorded its id.
    pending = gateway.refund(
        payment_id,
        payment.gateway_reference or "",
        Decimal("3.00"),
        "USD",
        metadata={"sandbox_pending": "true", "refundId": str(refund_id)},
    )
    assert pending.status == "pending"
    db.session.execute(
        update(Refund).where(Refund.id == refund_id).values(gateway_reference=pending.reference)
    )
    db.session.commit()
    assert send(payment_id, refund_id, gateway) == service.REFUND_PENDING  # asked, not sent again
    [refund] = refunds_of(payment_id)
    assert (refund.status, refund.gateway_reference) == (pay.R_PENDING, pending.reference)
    assert payment_of(payment_id).status == pay.COMPLETED  # pending refunds do not count
    # The sweep finds it once idle, and the task asks the gateway (nothing is sent again).
    db.session.execute(
        update(Refund).where(Refund.id == refund_id).values(updated_at=utcnow() - timedelta(seconds=600))
    )
    db.session.commit()
    assert service.sweep_pending_payments(max_attempts=3)["refunds"] == 1
    sandbox.api(
        "POST", f"/_sandbox/refunds/{pending.reference}/fail", json={"failureReason": "lost_or_stolen_card"}
    )
    assert send(payment_id, refund_id, gateway) == service.REFUND_FAILED
    [refund] = refunds_of(payment_id)
    assert (refund.status, refund.failure_reason) == (pay.R_FAILED, "LOST_OR_STOLEN_CARD")
    payment = payment_of(payment_id)
    assert (payment.status, payment.refunded_amount, payment.refundable_amount) == (
        pay.COMPLETED,
        Decimal("0.00"),
        Decimal("7.50"),
    )
    assert sandbox.stats(payment_id)["refunds"] == 1
    # Never retried: not by the task, not by the sweep.
    assert send(payment_id, refund_id, gateway) == service.SKIPPED
    db.session.execute(
        update(Refund).where(Refund.id == refund_id).values(updated_at=utcnow() - timedelta(seconds=600))
    )
    db.session.commit()
    assert service.sweep_pending_payments(max_attempts=3)["refunds"] == 0
    # The admins are alerted: one AdminAlerted per admin, once however often the handler runs.
    db.session.rollback()
    message = db.session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.event_type == "RefundFailed")
        .order_by(OutboxMessage.id.desc())
    ).first()
    assert message is not None and message.payload["reason"] == "LOST_OR_STOLEN_CARD"
    event = Event.from_payload(message.event_type, message.payload)
    for _ in range(2):
        alert_admins(event, EventContext(event_id=message.id, request_id=None))
    db.session.rollback()
    alerts = list(
        db.session.scalars(select(OutboxMessage.payload).where(OutboxMessage.event_type == "AdminAlerted"))
    )
    assert str(admin.id) in {a["user_id"] for a in alerts}
    assert len(alerts) == len({a["user_id"] for a in alerts})
    assert all(a["alert"] == "RefundFailed" and "LOST_OR_STOLEN_CARD" in a["detail"] for a in alerts)


def test_a_refund_the_gateway_rejects_is_failed_at_once(
    shop: Any, gateway: StripeGateway, sandbox: Sandbox
) -> None:
    _, payment_id = shop()
    charge(payment_id, gateway)
    refund_id = ask(payment_id, "2.00")
    # The charge was disputed and lost meanwhile... here: its intent no longer names a charge.
    db.session.execute(
        update(pay.Payment).where(pay.Payment.id == payment_id).values(gateway_reference="pi_unknown")
    )
    db.session.commit()
    assert send(payment_id, refund_id, gateway) == service.REFUND_FAILED
    [refund] = refunds_of(payment_id)
    assert refund.status == pay.R_FAILED and refund.failure_reason
    assert "RefundFailed" in events()


def test_a_refund_failing_after_success_stops_counting_through_the_webhook(
    shop: Any, gateway: StripeGateway, sandbox: Sandbox
) -> None:
    _, payment_id = shop()
    charge(payment_id, gateway)
    refund_id = ask(payment_id, None)
    assert send(payment_id, refund_id, gateway) == service.REFUNDED
    [refund] = refunds_of(payment_id)
    failed = sandbox.api(
        "POST",
        f"/_sandbox/refunds/{refund.gateway_reference}/fail",
        json={"failureReason": "expired_or_canceled_card"},
    ).json()
    outcome = service.handle_gateway_event(f"evt_{uuid.uuid4().hex}", "refund.updated", failed)
    assert outcome == "REFUND_FAILED"
    payment = payment_of(payment_id)
    assert (payment.status, payment.refunded_amount) == (pay.COMPLETED, Decimal("0.00"))
    # A late "succeeded" for it changes nothing: FAILED is final.
    late = {**failed, "status": "succeeded", "failure_reason": None}
    assert service.handle_gateway_event(f"evt_{uuid.uuid4().hex}", "refund.updated", late) == "UNCHANGED"
    assert payment_of(payment_id).status == pay.COMPLETED


def test_a_refund_made_in_the_gateway_dashboard_reaches_the_books(
    shop: Any, gateway: StripeGateway, sandbox: Sandbox
) -> None:
    _, payment_id = shop()
    charge(payment_id, gateway)
    intent = payment_of(payment_id).gateway_reference
    made = sandbox.api("POST", "/v1/refunds", data={"payment_intent": intent, "amount": 150}).json()
    assert (
        service.handle_gateway_event(f"evt_{uuid.uuid4().hex}", "refund.updated", made) == "REFUND_SUCCEEDED"
    )
    [refund] = refunds_of(payment_id)
    assert (refund.amount, refund.status, refund.reason, refund.gateway_reference) == (
        Decimal("1.50"),
        pay.R_SUCCEEDED,
        "MADE_AT_GATEWAY",
        made["id"],
    )
    assert payment_of(payment_id).status == pay.PARTIALLY_REFUNDED
    # The same refund again (charge.refunded lists it too): nothing more.
    again = service.handle_gateway_event(
        f"evt_{uuid.uuid4().hex}", "charge.refunded", {"object": "charge", "refunds": {"data": [made]}}
    )
    assert again == "UNCHANGED"
    assert len(refunds_of(payment_id)) == 1


def test_cancelling_a_paid_order_refunds_the_rest_through_the_same_path(
    shop: Any, gateway: StripeGateway, sandbox: Sandbox
) -> None:
    order_id, payment_id = shop()
    charge(payment_id, gateway)
    partial = ask(payment_id, "1.00")
    send(payment_id, partial, gateway)
    cancel(order_id, shop.customer.id)
    assert send(payment_id, None, gateway) == service.REFUNDED  # "the rest": 6.50
    payment = payment_of(payment_id)
    assert (payment.status, payment.refunded_amount) == (pay.REFUNDED, Decimal("7.50"))
    assert [r.amount for r in refunds_of(payment_id)] == [Decimal("1.00"), Decimal("6.50")]
    assert send(payment_id, None, gateway) == service.SKIPPED
    assert sandbox.stats(payment_id)["amountRefunded"] == 750
