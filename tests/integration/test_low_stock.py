"""SPEC §5.5 with real threads and real Postgres: concurrent sales across the threshold raise one
ProductLowStock per crossing, and each admin gets one e-mail over real SMTP."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.adapters import queue
from app.devtools.services import free_port
from app.devtools.smtp_sink import SmtpSink
from app.domain.actors import Actor
from app.domain.events import Event
from app.domain.notifications import Notification
from app.domain.outbox import OutboxMessage
from app.extensions import db
from app.services.catalogue import record_stock_movement
from app.services.dispatch import EventContext, handle_message
from app.services.handlers import EVENT_HANDLERS
from app.services.notifications import alert_admins
from tests.integration.test_order_concurrency import THREADS, add, buyers, checkout_call, race  # noqa: F401
from tests.shop import make_product
from tests.tasks import run_task


def low_stock_events() -> list[OutboxMessage]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.event_type == "ProductLowStock")
            .order_by(OutboxMessage.id)
        )
    )


def test_concurrent_sales_across_the_threshold_raise_it_once(app, client, buyers):  # noqa: F811
    product = make_product(db.session, price="2.00", stock=THREADS + 4)  # threshold 5 (default)
    people = buyers(THREADS)
    carts = [add(client, user, auth, product.id, 1) for user, auth in people]
    responses = race(app, [checkout_call(u, a, c) for (u, a), c in zip(people, carts, strict=True)])
    assert [r.status_code for r in responses] == [201] * THREADS
    events = low_stock_events()
    assert len(events) == 1, [e.payload for e in events]
    assert events[0].payload["stock"] == 5 and events[0].payload["low_stock_threshold"] == 5


@pytest.fixture
def smtp(app, monkeypatch):
    sink = SmtpSink("127.0.0.1", free_port()).start()
    monkeypatch.setitem(app.config, "SMTP_URL", sink.url)
    yield sink
    sink.stop()


def test_every_admin_gets_one_e_mail_naming_the_product_and_its_stock(app, app_ctx, make_user, smtp):
    queue.publish_breaker.close()
    admins = [make_user("admin", name=f"Admin {n}") for n in range(2)]
    make_user("customer")
    product = make_product(db.session, stock=7, name="Lamp")  # threshold: the default, 5
    record_stock_movement(Actor(admins[0].id, "admin"), product.id, -4, "ADJUSTMENT")
    (crossing,) = low_stock_events()
    assert crossing.payload["stock"] == 3

    assert handle_message(crossing.id, EVENT_HANDLERS) is True  # alert_admins: one AdminAlerted each
    again = Event.from_payload(crossing.event_type, crossing.payload)
    alert_admins(again, EventContext(event_id=crossing.id, request_id=None))  # redelivered: no more
    db.session.expire_all()
    alerts = list(db.session.scalars(select(OutboxMessage).where(OutboxMessage.event_type == "AdminAlerted")))
    assert sorted(a.payload["user_id"] for a in alerts) == sorted(str(a.id) for a in admins)
    for alert in alerts:
        handle_message(alert.id, EVENT_HANDLERS)  # notify_customer: one notification for its admin
    db.session.expire_all()
    rows = list(db.session.scalars(select(Notification)))
    assert sorted(n.recipient for n in rows) == sorted(a.email for a in admins)
    for row in rows:
        run_task(app, queue.DELIVER_NOTIFICATION, str(row.id))
    assert sorted(r for m in smtp.received for r in m.rcpt_tos) == sorted(a.email for a in admins)
    assert all(m.subject == "[OMS alert] ProductLowStock" for m in smtp.received)
    assert all("Lamp is low on stock: 3 left (threshold 5)" in m.body() for m in smtp.received)
