"""SPEC §5.7/§5.6 for real: a 550 from a real SMTP server fails a notification once and for good
(the retry job never queues it), a 4xx is retried as before, every attempt is kept, and erasure
scrubs the user's notifications and fails the unsent ones."""

from __future__ import annotations

from typing import Any

import pytest
from flask import current_app
from sqlalchemy import select

from app.adapters import queue
from app.devtools.services import free_port
from app.devtools.smtp_sink import SmtpSink
from app.domain.actors import Actor
from app.domain.events import OrderPlaced, OrderShipped, PaymentCompleted
from app.domain.notifications import N_FAILED, N_PENDING, N_SENT, NO_RECIPIENT, Notification
from app.domain.orders import Order
from app.extensions import db
from app.services.dispatch import EventContext
from app.services.notifications import notify_customer
from app.services.users import delete_user
from tests.shop import make_product, place_order_directly
from tests.tasks import run_task

BOUNCING = "gone@example.com"
GREYLISTED = "later@example.com"


@pytest.fixture(autouse=True)
def _queue_breaker_closed():
    queue.publish_breaker.close()
    yield
    queue.publish_breaker.close()


@pytest.fixture
def smtp(app, monkeypatch) -> Any:
    """A real aiosmtpd server that answers 550 for one address and 450 for another."""
    sink = SmtpSink(
        "127.0.0.1",
        free_port(),
        refuse={BOUNCING: "550 5.1.1 No such mailbox", GREYLISTED: "450 4.2.0 Greylisted, try later"},
    ).start()
    monkeypatch.setitem(app.config, "SMTP_URL", sink.url)
    monkeypatch.setitem(app.config, "SMTP_TIMEOUT_SECONDS", 2.0)
    monkeypatch.setitem(app.config, "NOTIFY_MAX_ATTEMPTS", 3)
    yield sink
    sink.stop()


def order_of(user) -> Order:
    mug = make_product(db.session, price="7.50", stock=10)
    placed = place_order_directly(db.session, user.id, {mug.id: 1})
    db.session.refresh(placed)
    return placed


def notify(order: Order, event_id: int, event_type: type = OrderPlaced) -> Notification:
    if event_type is OrderShipped:
        event: Any = OrderShipped(order_id=str(order.id), user_id=str(order.user_id))
    else:
        assert order.payment is not None
        event = event_type(
            order_id=str(order.id), user_id=str(order.user_id), payment_id=str(order.payment.id)
        )
    notify_customer(event, EventContext(event_id=event_id, request_id=None))
    return one(event_id)


def one(event_id: int) -> Notification:
    db.session.expire_all()
    return db.session.scalars(select(Notification).where(Notification.event_id == event_id)).one()


def deliver(notification: Notification) -> str:
    return run_task(current_app._get_current_object(), queue.DELIVER_NOTIFICATION, str(notification.id))


def retry_job() -> int:
    return run_task(current_app._get_current_object(), queue.RETRY_FAILED_NOTIFICATIONS)


def test_a_550_fails_once_and_the_retry_job_never_queues_it(app, app_ctx, make_user, smtp):
    bouncing = make_user(email=BOUNCING)
    fine = make_user()
    rejected = notify(order_of(bouncing), 1)

    assert deliver(rejected) == N_FAILED
    rejected = one(1)
    assert (rejected.status, rejected.attempts, rejected.permanent_failure) == (N_FAILED, 1, True)
    assert "550" in rejected.last_error
    assert len(rejected.deliveries) == 1 and "550" in rejected.deliveries[0]["error"]

    for _ in range(3):  # as many beat runs as you like: it stays failed, with one attempt
        assert retry_job() == 0
    rejected = one(1)
    assert (rejected.status, rejected.attempts, len(rejected.deliveries)) == (N_FAILED, 1, 1)
    assert smtp.received == []

    # The server is up: a bounce does not open the SMTP breaker for everyone else.
    sent = notify(order_of(fine), 2)
    assert deliver(sent) == N_SENT
    assert len(smtp.received) == 1


def test_a_4xx_is_retried_and_every_attempt_is_kept(app, app_ctx, make_user, smtp):
    user = make_user(email=GREYLISTED)
    pending = notify(order_of(user), 3)

    assert deliver(pending) == N_FAILED  # eager: its three attempts run at once
    failed = one(3)
    assert (failed.status, failed.attempts, failed.permanent_failure) == (N_FAILED, 3, False)
    assert [("450" in d["error"]) for d in failed.deliveries] == [True, True, True]

    assert retry_job() == 1  # transient: a new round, as in SPEC §4
    again = one(3)
    assert (again.status, again.attempts) == (N_PENDING, 0)
    deliver(again)
    assert len(one(3).deliveries) == 6  # the history spans both rounds


def test_the_notifications_body_shows_the_deliveries(app, client, make_user, token_for, smtp):
    with app.app_context():
        user = make_user(email=BOUNCING)
        notification = notify(order_of(user), 4)
        deliver(notification)
    body = client.get(f"/users/{user.id}/notifications", headers=token_for(user)).get_json()
    (item,) = body["items"]
    assert item["status"] == N_FAILED and item["permanentFailure"] is True
    assert len(item["deliveries"]) == 1
    assert set(item["deliveries"][0]) == {"at", "error"} and "550" in item["deliveries"][0]["error"]


def test_erasure_scrubs_recipient_and_name_and_fails_what_was_not_sent(app, app_ctx, make_user, smtp):
    user = make_user(name="Ada Lovelace")
    order = order_of(user)
    sent = notify(order, 5)
    assert deliver(sent) == N_SENT
    notify(order, 6, PaymentCompleted)  # created, not yet delivered
    failed = notify(order, 7, OrderShipped)
    smtp.stop()
    assert deliver(failed) == N_FAILED
    smtp.start()
    assert "Ada Lovelace" in one(6).message and one(6).recipient == user.email

    delete_user(Actor(user.id, "customer"), user.id)

    by_id = {n: one(n) for n in (5, 6, 7)}
    for n in by_id.values():
        assert n.recipient is None
        assert "Ada Lovelace" not in n.message and "Ada" not in n.message
    assert (by_id[5].status, by_id[5].last_error) == (N_SENT, None)  # sent stays sent (for the books)
    for n in (by_id[6], by_id[7]):
        assert (n.status, n.last_error, n.next_attempt_at) == (N_FAILED, NO_RECIPIENT, None)
    # Nothing reaches the erased address any more: not the retry job, not a queued delivery.
    assert retry_job() == 0
    assert deliver(by_id[6]) == "SKIPPED"
    assert len(smtp.received) == 1
