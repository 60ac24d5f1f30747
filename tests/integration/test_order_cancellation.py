"""apply_cancellation: the one place that decides what cancelling an order means."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.domain import payments as pay
from app.domain.actors import SYSTEM, Actor
from app.domain.catalogue import Product, StockMovement
from app.domain.errors import InvalidTransition, VersionConflict
from app.domain.orders import (
    CANCELLED,
    CANCELLED_BY_CUSTOMER,
    PAYMENT_FAILED,
    PAYMENT_TIMEOUT,
    SHIPPED,
    Order,
    OrderStatusChange,
)
from app.domain.outbox import OutboxMessage
from app.extensions import db
from app.services.cancellation import apply_cancellation
from app.services.unit_of_work import UnitOfWork
from tests.shop import make_product, place_order_directly


@pytest.fixture
def placed(app_ctx, customer):
    apple = make_product(db.session, price="2.50", stock=10)
    pear = make_product(db.session, price="1.25", stock=5)
    order = place_order_directly(db.session, customer.id, {apple.id: 3, pear.id: 2})
    return order.id, apple.id, pear.id


def cancel(order_id, actor, reason, **kwargs):
    with UnitOfWork(relay_after_commit=False) as uow:
        order = apply_cancellation(uow, order_id, actor, reason, **kwargs)
        uow.commit()
    return order


def stock_of(product_id):
    return db.session.scalar(select(Product.stock).where(Product.id == product_id))


def ledger_of(product_id):
    return db.session.scalar(
        select(func.coalesce(func.sum(StockMovement.delta), 0)).where(StockMovement.product_id == product_id)
    )


def test_cancelling_returns_every_line_to_stock_through_the_ledger(placed, customer):
    order_id, apple, pear = placed
    assert (stock_of(apple), stock_of(pear)) == (7, 3)
    cancel(order_id, Actor(customer.id, "customer"), CANCELLED_BY_CUSTOMER)
    assert (stock_of(apple), stock_of(pear)) == (10, 5)
    assert (ledger_of(apple), ledger_of(pear)) == (10, 5)
    releases = db.session.scalars(
        select(StockMovement).where(
            StockMovement.order_id == order_id, StockMovement.reason == "ORDER_RELEASE"
        )
    ).all()
    assert sorted(m.delta for m in releases) == [2, 3]


def test_cancelling_voids_a_pending_payment_sets_the_reason_and_bumps_the_version(placed, customer):
    order_id, *_ = placed
    order = cancel(order_id, Actor(customer.id, "customer", "req-1"), CANCELLED_BY_CUSTOMER)
    assert (order.status, order.cancel_reason, order.version) == (CANCELLED, CANCELLED_BY_CUSTOMER, 2)
    payment = db.session.scalar(select(pay.Payment).where(pay.Payment.order_id == order_id))
    assert (payment.status, payment.failure_reason) == (pay.FAILED, "ORDER_CANCELLED")
    trail = db.session.scalars(
        select(OrderStatusChange).where(OrderStatusChange.order_id == order_id).order_by(OrderStatusChange.at)
    ).all()
    assert [(c.from_status, c.to_status) for c in trail] == [(None, "PLACED"), ("PLACED", "CANCELLED")]
    assert trail[-1].actor == f"customer:{customer.id}"
    assert (trail[-1].reason, trail[-1].request_id) == (CANCELLED_BY_CUSTOMER, "req-1")


def test_a_timed_out_order_fails_its_payment_with_payment_timeout(placed):
    order_id, *_ = placed
    cancel(order_id, SYSTEM, PAYMENT_TIMEOUT)
    payment = db.session.scalar(select(pay.Payment).where(pay.Payment.order_id == order_id))
    assert (payment.status, payment.failure_reason) == (pay.FAILED, PAYMENT_TIMEOUT)


def test_an_already_failed_payment_is_left_as_the_worker_set_it(placed):
    order_id, *_ = placed
    payment = db.session.scalar(select(pay.Payment).where(pay.Payment.order_id == order_id))
    payment.status, payment.failure_reason = pay.FAILED, "card_declined"
    db.session.commit()
    order = cancel(order_id, SYSTEM, PAYMENT_FAILED)
    assert order.cancel_reason == PAYMENT_FAILED
    payment = db.session.scalar(select(pay.Payment).where(pay.Payment.order_id == order_id))
    assert (payment.status, payment.failure_reason) == (pay.FAILED, "card_declined")


def test_a_completed_payment_gets_a_refund_requested_event(placed):
    order_id, *_ = placed
    payment = db.session.scalar(select(pay.Payment).where(pay.Payment.order_id == order_id))
    payment.status = pay.COMPLETED
    db.session.commit()
    cancel(order_id, SYSTEM, "CANCELLED_BY_ADMIN")
    names = db.session.scalars(select(OutboxMessage.event_type).order_by(OutboxMessage.id)).all()
    assert names == ["OrderPlaced", "RefundRequested", "OrderCancelled"]
    payment = db.session.scalar(select(pay.Payment).where(pay.Payment.order_id == order_id))
    assert payment.status == pay.COMPLETED  # the payments handler refunds through the gateway


def test_cancelling_twice_changes_nothing_the_second_time(placed, customer):
    order_id, apple, _ = placed
    cancel(order_id, SYSTEM, PAYMENT_TIMEOUT)
    again = cancel(order_id, Actor(customer.id, "customer"), CANCELLED_BY_CUSTOMER)
    assert (again.version, again.cancel_reason) == (2, PAYMENT_TIMEOUT)
    assert stock_of(apple) == 10
    names = db.session.scalars(select(OutboxMessage.event_type).order_by(OutboxMessage.id)).all()
    assert names == ["OrderPlaced", "OrderCancelled"]


def test_a_shipped_order_cannot_be_cancelled(placed):
    order_id, apple, _ = placed
    order = db.session.get(Order, order_id)
    order.status = SHIPPED
    db.session.commit()
    with pytest.raises(InvalidTransition):
        cancel(order_id, SYSTEM, "CANCELLED_BY_ADMIN")
    assert stock_of(apple) == 7


def test_a_stale_expected_version_is_a_conflict(placed):
    order_id, *_ = placed
    with pytest.raises(VersionConflict):
        cancel(order_id, SYSTEM, "CANCELLED_BY_ADMIN", expected_version=7)


def test_it_does_not_commit(placed):
    order_id, *_ = placed
    with UnitOfWork(relay_after_commit=False) as uow:
        apply_cancellation(uow, order_id, SYSTEM, PAYMENT_TIMEOUT)
    db.session.expire_all()
    assert db.session.get(Order, order_id).status == "PLACED"
