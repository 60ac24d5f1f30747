"""Notifications (observer): a domain event becomes one e-mail, delivered over real SMTP with retries."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
import redis as redis_lib
from flask import current_app
from sqlalchemy import select, update

from app.adapters import mailer, queue
from app.devtools.services import free_port
from app.devtools.smtp_sink import SmtpSink
from app.domain.base import utcnow
from app.domain.events import OrderCancelled, OrderPlaced, PaymentFailed
from app.domain.notifications import N_FAILED, N_PENDING, N_SENT, NO_RECIPIENT, Notification
from app.domain.orders import PAYMENT_TIMEOUT, Order
from app.domain.users import User
from app.extensions import db
from app.services.dispatch import EventContext
from app.services.handlers import EVENT_HANDLERS
from app.services.notifications import notify_customer
from tests.shop import make_product, place_order_directly
from tests.tasks import run_task


@pytest.fixture(autouse=True)
def _queue_breaker_closed():
    queue.publish_breaker.close()
    yield
    queue.publish_breaker.close()


@pytest.fixture
def smtp(app, monkeypatch) -> Any:
    """A real aiosmtpd server on a free port; ``smtp.stop()`` simulates an outage."""
    sink = SmtpSink("127.0.0.1", free_port()).start()
    monkeypatch.setitem(app.config, "SMTP_URL", sink.url)
    monkeypatch.setitem(app.config, "SMTP_TIMEOUT_SECONDS", 2.0)
    yield sink
    sink.stop()


@pytest.fixture
def order(app_ctx, customer) -> Order:
    mug = make_product(db.session, price="7.50", stock=10, name="Blue <mug>")
    placed = place_order_directly(db.session, customer.id, {mug.id: 2})
    db.session.refresh(placed)
    return placed


def placed_event(order: Order) -> OrderPlaced:
    assert order.payment is not None
    return OrderPlaced(order_id=str(order.id), user_id=str(order.user_id), payment_id=str(order.payment.id))


def notifications() -> list[Notification]:
    db.session.expire_all()
    return list(db.session.scalars(select(Notification).order_by(Notification.created_at)))


def queued_deliveries(app) -> list[list[Any]]:
    client = redis_lib.Redis.from_url(app.config["REDIS_URL"])
    messages = [json.loads(raw) for raw in client.lrange(queue.NOTIFICATIONS_QUEUE, 0, -1)]
    return [
        json.loads(base64.b64decode(m["body"]))[0]
        for m in messages
        if m["headers"]["task"] == queue.DELIVER_NOTIFICATION
    ]


def deliver(notification_id: uuid.UUID) -> None:
    """Run the delivery task for real (eagerly: its retries run at once, without the countdown)."""
    run_task(current_app._get_current_object(), queue.DELIVER_NOTIFICATION, str(notification_id))


def retry_failed_notifications() -> int:
    return run_task(current_app._get_current_object(), queue.RETRY_FAILED_NOTIFICATIONS)


def test_every_customer_facing_event_has_the_notification_handler():
    customer_events = {
        "OrderPlaced",
        "PaymentCompleted",
        "PaymentFailed",
        "OrderShipped",
        "OrderDelivered",
        "OrderCancelled",
        "PaymentRefunded",
        "PaymentPartiallyRefunded",
        "AdminAlerted",  # addressed to one admin: the event's user
        "PaymentActionRequired",
        "PasswordResetRequested",
        "EmailVerificationRequested",
    }
    for event_type, handlers in EVENT_HANDLERS.items():
        assert (notify_customer in handlers) == (event_type.__name__ in customer_events)


def test_an_event_becomes_one_email_received_by_the_smtp_server(app_ctx, order, customer, smtp):
    notify_customer(placed_event(order), EventContext(event_id=101, request_id="req-n-1"))

    (created,) = notifications()
    assert (created.event, created.status, created.attempts) == ("OrderPlaced", N_PENDING, 0)
    assert created.recipient == customer.email and created.event_id == 101
    assert str(order.id) in created.message and "15.00 USD" in created.message
    assert queued_deliveries(app_ctx) == [[str(created.id)]]

    deliver(created.id)

    (mail,) = smtp.received
    assert mail.rcpt_tos == [customer.email]
    assert mail.subject == f"We received your order {str(order.id)[-8:].upper()}"
    assert mail.message_id == f"<{created.id}@oms.local>"
    assert "2 x Blue <mug>: 15.00 USD" in mail.body("plain")
    assert "Blue &lt;mug&gt;" in mail.body("html")
    (sent,) = notifications()
    assert (sent.status, sent.attempts, sent.last_error) == (N_SENT, 1, None)
    assert sent.sent_at is not None


def test_a_redelivered_event_still_makes_one_notification_and_one_email(app_ctx, order, smtp):
    event = placed_event(order)
    notify_customer(event, EventContext(event_id=7, request_id=None))
    notify_customer(event, EventContext(event_id=7, request_id=None))  # the outbox delivered it twice

    (only,) = notifications()
    # Still PENDING the second time, so its delivery is queued again (the first may have been lost).
    assert queued_deliveries(app_ctx) == [[str(only.id)], [str(only.id)]]
    deliver(only.id)
    deliver(only.id)
    assert len(smtp.received) == 1
    assert notifications()[0].attempts == 1


def test_a_sent_notification_is_not_queued_again_when_its_event_comes_back(app_ctx, order, smtp):
    event = placed_event(order)
    notify_customer(event, EventContext(event_id=8, request_id=None))
    deliver(notifications()[0].id)
    notify_customer(event, EventContext(event_id=8, request_id=None))
    assert len(queued_deliveries(app_ctx)) == 1
    assert len(notifications()) == 1


def test_different_events_of_an_order_each_get_their_notification(app_ctx, order, smtp):
    notify_customer(placed_event(order), EventContext(event_id=1, request_id=None))
    cancelled = OrderCancelled(order_id=str(order.id), user_id=str(order.user_id), reason=PAYMENT_TIMEOUT)
    notify_customer(cancelled, EventContext(event_id=2, request_id=None))
    assert [n.event for n in notifications()] == ["OrderPlaced", "OrderCancelled"]
    assert "did not receive your payment in time" in notifications()[1].message


def test_smtp_down_fails_after_max_attempts_then_the_retry_job_sends_it(
    app, app_ctx, order, smtp, monkeypatch
):
    monkeypatch.setitem(app.config, "NOTIFY_MAX_ATTEMPTS", 3)
    smtp.stop()
    notify_customer(placed_event(order), EventContext(event_id=11, request_id=None))
    (pending,) = notifications()

    deliver(pending.id)  # three attempts, each refused

    (failed,) = notifications()
    assert (failed.status, failed.attempts) == (N_FAILED, 3)
    assert "Connection refused" in failed.last_error or "ConnectionRefused" in failed.last_error
    assert failed.sent_at is None

    smtp.start()
    assert retry_failed_notifications() == 1
    (requeued,) = notifications()
    assert (requeued.status, requeued.attempts) == (N_PENDING, 0)  # a new round of attempts
    assert queued_deliveries(app)[-1] == [str(requeued.id)]

    deliver(requeued.id)
    (sent,) = notifications()
    assert (sent.status, sent.attempts) == (N_SENT, 1)
    assert len(smtp.received) == 1


def test_the_retry_job_leaves_notifications_older_than_a_day_alone(app_ctx, order, smtp):
    notify_customer(placed_event(order), EventContext(event_id=12, request_id=None))
    db.session.execute(
        update(Notification).values(status=N_FAILED, created_at=utcnow().replace(year=2000), last_error="x")
    )
    db.session.commit()
    assert retry_failed_notifications() == 0
    assert notifications()[0].status == N_FAILED


def test_the_retry_job_requeues_a_pending_notification_whose_delivery_was_lost(app, app_ctx, order, smtp):
    notify_customer(placed_event(order), EventContext(event_id=13, request_id=None))
    redis_lib.Redis.from_url(app.config["REDIS_URL"]).delete(
        queue.NOTIFICATIONS_QUEUE
    )  # Redis lost the queued delivery
    db.session.execute(update(Notification).values(next_attempt_at=utcnow().replace(year=2000)))
    db.session.commit()

    assert retry_failed_notifications() == 1
    (lost,) = notifications()
    assert queued_deliveries(app) == [[str(lost.id)]]
    deliver(lost.id)
    assert len(smtp.received) == 1


def test_an_erased_user_gets_no_email(app_ctx, order, customer, smtp):
    db.session.execute(update(User).where(User.id == customer.id).values(email=None, deleted_at=utcnow()))
    db.session.commit()
    failed = PaymentFailed(
        order_id=str(order.id), user_id=str(customer.id), payment_id="p", reason="declined"
    )
    notify_customer(failed, EventContext(event_id=21, request_id=None))

    (unsent,) = notifications()
    assert (unsent.status, unsent.last_error, unsent.recipient) == (N_FAILED, NO_RECIPIENT, None)
    assert queued_deliveries(app_ctx) == []
    assert retry_failed_notifications() == 0
    deliver(unsent.id)
    assert smtp.received == []


def test_the_smtp_breaker_opens_for_every_worker_and_then_fails_fast(app, app_ctx, order, smtp, monkeypatch):
    monkeypatch.setitem(app.config, "NOTIFY_MAX_ATTEMPTS", 4)
    monkeypatch.setitem(app.config, "SMTP_BREAKER_FAIL_MAX", 2)
    smtp.stop()
    notify_customer(placed_event(order), EventContext(event_id=31, request_id=None))

    deliver(notifications()[0].id)

    (failed,) = notifications()
    assert (failed.status, failed.attempts) == (N_FAILED, 4)
    assert "circuit open" in failed.last_error  # attempts 3 and 4 never connected
    state = redis_lib.Redis.from_url(app.config["REDIS_URL"]).get(
        f"{mailer.SmtpMailer.from_config(app.config).breaker.namespace}:pybreaker:state"
    )
    assert state == b"open"  # in Redis: every worker process sees the same state


def test_partial_refunds_and_admin_alerts_render_their_emails(app_ctx, order, customer):
    from app.domain.events import AdminAlerted, PaymentPartiallyRefunded

    partial = PaymentPartiallyRefunded(
        order_id=str(order.id), user_id=str(customer.id), payment_id=str(order.payment.id), amount="4.00"
    )
    notify_customer(partial, EventContext(event_id=301, request_id=None))
    alert = AdminAlerted(
        user_id=str(customer.id),
        order_id=str(order.id),
        payment_id=str(order.payment.id),
        alert="RefundFailed",
        detail="refund r1 of 4.00 failed at the gateway: EXPIRED_OR_CANCELED_CARD",
        source_event_id=301,
    )
    notify_customer(alert, EventContext(event_id=302, request_id=None))
    by_event = {n.event: n for n in notifications()}
    assert "Partial refund" in by_event["PaymentPartiallyRefunded"].subject
    assert "4.00 USD" in by_event["PaymentPartiallyRefunded"].message
    assert by_event["AdminAlerted"].subject.startswith("[OMS alert] RefundFailed")
    assert "EXPIRED_OR_CANCELED_CARD" in by_event["AdminAlerted"].message
