"""How the worker handles an event: a new order charged in its own dispatch, and one transaction for
the bookkeeping handlers and the processed mark (issue 20: fewer tasks and commits per payment)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import select

from app.adapters import queue
from app.adapters.gateway import StripeGateway
from app.adapters.queue import CHARGE_PAYMENT, BrokerUnavailable
from app.domain import payments as pay
from app.domain.notifications import Notification
from app.domain.outbox import OutboxMessage
from app.domain.payments import Payment
from app.extensions import db
from app.services import notifications
from app.services import payments as payment_service
from app.services.dispatch import handle_message, in_transaction
from app.services.handlers import worker_handlers
from app.services.notifications import notify_customer
from app.services.webhooks import fan_out
from tests.sandbox import API_KEY, Sandbox, sandbox_fixture  # noqa: F401
from tests.shop import make_product, place_order_directly


@pytest.fixture(autouse=True)
def _breaker_closed() -> Any:
    queue.publish_breaker.close()
    yield
    queue.publish_breaker.close()


@pytest.fixture
def placed(app_ctx: Any, customer: Any) -> tuple[uuid.UUID, int]:
    """A new order (payment PENDING) and the id of its OrderPlaced outbox message."""
    apple = make_product(db.session, price="2.50", stock=20)
    order = place_order_directly(db.session, customer.id, {apple.id: 2})
    payment_id = order.payment.id
    message_id = db.session.scalar(
        select(OutboxMessage.id)
        .where(OutboxMessage.event_type == "OrderPlaced")
        .order_by(OutboxMessage.id.desc())
    )
    db.session.commit()
    assert message_id is not None
    return payment_id, message_id


def processed(message_id: int) -> bool:
    db.session.rollback()
    return (
        db.session.scalar(select(OutboxMessage.processed_at).where(OutboxMessage.id == message_id))
        is not None
    )


def notifications_of(message_id: int) -> list[Notification]:
    db.session.rollback()
    return list(db.session.scalars(select(Notification).where(Notification.event_id == message_id)))


def test_the_worker_charges_a_new_order_in_its_dispatch_without_a_charge_task(
    placed: tuple[uuid.UUID, int], sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    payment_id, message_id = placed
    queued: list[str] = []
    monkeypatch.setattr(payment_service, "send_task", lambda name, *a, **k: queued.append(name))
    settings = payment_service.ChargeSettings(
        StripeGateway(API_KEY, sandbox.url, timeout=5), max_attempts=3, backoff_seconds=0.1
    )
    assert handle_message(message_id, worker_handlers(settings)) is True
    db.session.rollback()
    assert db.session.get(Payment, payment_id).status == pay.COMPLETED  # type: ignore[union-attr]
    assert CHARGE_PAYMENT not in queued
    assert processed(message_id)
    assert len(notifications_of(message_id)) == 1
    # Delivered again (late acknowledgement): nothing to do, nothing charged twice.
    assert handle_message(message_id, worker_handlers(settings)) is False
    assert sandbox.stats(payment_id)["charges"] == 1


def test_a_charge_that_must_wait_becomes_a_charge_task_with_its_countdown(
    placed: tuple[uuid.UUID, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    payment_id, message_id = placed
    queued: list[tuple[str, list[Any], Any]] = []
    monkeypatch.setattr(
        payment_service, "send_task", lambda name, args, **k: queued.append((name, args, k.get("countdown")))
    )
    unreachable = StripeGateway(API_KEY, "http://127.0.0.1:9", timeout=1)  # nothing listens there
    settings = payment_service.ChargeSettings(unreachable, max_attempts=3, backoff_seconds=0.1)
    assert handle_message(message_id, worker_handlers(settings)) is True
    ((name, args, countdown),) = queued
    assert (name, args) == (CHARGE_PAYMENT, [str(payment_id)])
    assert countdown is not None and countdown > 0
    db.session.rollback()
    payment = db.session.get(Payment, payment_id)
    assert payment is not None and payment.status == pay.PENDING and payment.attempts == 1
    assert processed(message_id)


def test_the_bookkeeping_handlers_and_the_processed_mark_commit_once(placed: tuple[uuid.UUID, int]) -> None:
    _, message_id = placed
    commits: list[int] = []

    def count(_conn: Any) -> None:
        commits.append(1)

    sa_event.listen(db.engine, "commit", count)
    try:
        assert handle_message(message_id, {_event_type(message_id): [notify_customer, fan_out]}) is True
    finally:
        sa_event.remove(db.engine, "commit", count)
    assert len(commits) == 1
    assert processed(message_id)
    assert len(notifications_of(message_id)) == 1


def test_a_failing_bookkeeping_handler_keeps_the_others_work_and_the_message_unprocessed(
    placed: tuple[uuid.UUID, int],
) -> None:
    _, message_id = placed

    @in_transaction
    def broken(event: Any, context: Any, uow: Any) -> None:
        raise RuntimeError("broken handler")

    with pytest.raises(RuntimeError):
        handle_message(message_id, {_event_type(message_id): [broken, notify_customer]})
    assert not processed(message_id)
    assert len(notifications_of(message_id)) == 1  # the other handler still had its turn
    # Redelivered once the broken handler is fixed: the notification is not recorded twice.
    assert handle_message(message_id, {_event_type(message_id): [notify_customer]}) is True
    assert processed(message_id)
    assert len(notifications_of(message_id)) == 1


def test_a_refused_publish_after_the_commit_leaves_the_message_to_be_dispatched_again(
    placed: tuple[uuid.UUID, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, message_id = placed

    def refused(*_: Any, **__: Any) -> None:
        raise BrokerUnavailable("broker down")

    monkeypatch.setattr(notifications, "send_task", refused)
    with pytest.raises(BrokerUnavailable):
        handle_message(message_id, {_event_type(message_id): [notify_customer]})
    assert not processed(message_id)
    (recorded,) = notifications_of(message_id)
    assert recorded.status == "PENDING"


def _event_type(message_id: int) -> Any:
    from app.domain.events import OrderPlaced

    db.session.rollback()
    assert (
        db.session.scalar(select(OutboxMessage.event_type).where(OutboxMessage.id == message_id))
        == "OrderPlaced"
    )
    return OrderPlaced
