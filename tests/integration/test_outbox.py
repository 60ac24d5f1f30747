"""The transactional outbox: written in the caller's transaction, relayed after commit and by beat."""

import json
import threading

import psycopg
import pytest
import redis as redis_lib
from sqlalchemy import select, update

from app.adapters import queue
from app.domain.events import OrderDelivered
from app.domain.outbox import OutboxMessage
from app.extensions import db, limiter
from app.log import bind_request_id
from app.services import handlers
from app.services.dispatch import handle_message, relay_outbox
from app.services.unit_of_work import UnitOfWork
from tests.conftest import make_app
from tests.shop import make_product, place_order_directly
from tests.tasks import run_task


def event(n: int = 1) -> OrderDelivered:
    return OrderDelivered(order_id=f"order-{n}", user_id="user-1")


def queued_messages(app) -> list[dict]:
    client = redis_lib.Redis.from_url(app.config["REDIS_URL"])
    return [json.loads(raw) for raw in client.lrange("oms", 0, -1)]


def messages() -> list[OutboxMessage]:
    return list(db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


@pytest.fixture(autouse=True)
def _breaker_closed():
    queue.publish_breaker.close()
    yield
    queue.publish_breaker.close()


def test_events_are_written_only_if_the_transaction_commits(app_ctx):
    with UnitOfWork(relay_after_commit=False) as uow:
        uow.record(event())
        # leaving without commit rolls back
    assert messages() == []
    with UnitOfWork(relay_after_commit=False) as uow:
        uow.record(event())
        uow.commit()
    rows = messages()
    assert [(m.event_type, m.published_at) for m in rows] == [("OrderDelivered", None)]


def test_commit_relays_to_the_queue_with_the_request_id(app_ctx):
    bind_request_id("req-outbox-1")
    with UnitOfWork() as uow:
        uow.record(event())
        uow.commit()
    (row,) = messages()
    assert row.published_at is not None and row.request_id == "req-outbox-1"
    (message,) = queued_messages(app_ctx)
    assert message["headers"]["task"] == queue.DISPATCH_EVENT
    assert message["headers"]["request_id"] == "req-outbox-1"


def test_commit_succeeds_and_keeps_the_event_when_the_broker_is_unreachable(app, database_url):
    broken = make_app(database_url, "redis://127.0.0.1:9/0")
    with broken.app_context():
        with UnitOfWork() as uow:
            uow.record(event())
            uow.commit()
        (row,) = messages()
        assert row.published_at is None
        assert row.publish_attempts == 1 and row.last_error
        db.session.remove()
    limiter.init_app(app)  # the global limiter back on the suite's app (and its Redis)


def test_beat_relay_publishes_what_was_left_behind(app_ctx):
    with UnitOfWork(relay_after_commit=False) as uow:
        for n in range(3):
            uow.record(event(n))
        uow.commit()
    assert relay_outbox() == 3
    assert relay_outbox() == 0
    assert len(queued_messages(app_ctx)) == 3
    assert all(m.published_at is not None for m in messages())


def test_relay_skips_rows_another_relay_holds(app_ctx, database_url):
    with UnitOfWork(relay_after_commit=False) as uow:
        uow.record(event())
        uow.commit()
    with psycopg.connect(database_url) as other:
        other.execute("SELECT id FROM outbox FOR UPDATE")
        assert relay_outbox() == 0  # SKIP LOCKED: no wait, no double publish
        other.rollback()
    assert relay_outbox() == 1


def test_published_but_never_processed_messages_are_published_again(app_ctx):
    with UnitOfWork(relay_after_commit=False) as uow:
        uow.record(event())
        uow.commit()
    db.session.execute(
        update(OutboxMessage).values(published_at=db.func.now() - db.text("interval '10 minutes'"))
    )
    db.session.commit()
    assert relay_outbox() == 1


def test_dispatch_runs_every_handler_once(app_ctx, monkeypatch):
    calls: list[tuple[str, int]] = []
    monkeypatch.setitem(
        handlers.EVENT_HANDLERS, OrderDelivered, [lambda e, ctx: calls.append((e.order_id, ctx.event_id))]
    )
    with UnitOfWork(relay_after_commit=False) as uow:
        uow.record(event(7))
        uow.commit()
    (row,) = messages()
    assert run_task(app_ctx, queue.DISPATCH_EVENT, row.id) is True
    assert run_task(app_ctx, queue.DISPATCH_EVENT, row.id) is False  # re-delivery: nothing to do
    assert calls == [("order-7", row.id)]
    db.session.expire_all()
    assert messages()[0].processed_at is not None


def test_a_failing_handler_leaves_the_message_unprocessed_for_redelivery(app_ctx, monkeypatch):
    def boom(e, ctx):
        raise RuntimeError("handler failed")

    monkeypatch.setitem(handlers.EVENT_HANDLERS, OrderDelivered, [boom])
    with UnitOfWork(relay_after_commit=False) as uow:
        uow.record(event())
        uow.commit()
    (row,) = messages()
    with pytest.raises(RuntimeError):
        run_task(app_ctx, queue.DISPATCH_EVENT, row.id)
    db.session.rollback()
    assert messages()[0].processed_at is None


def test_concurrent_relays_publish_each_message_once(app, app_ctx):
    with UnitOfWork(relay_after_commit=False) as uow:
        for n in range(50):
            uow.record(event(n))
        uow.commit()
    counts: list[int] = []

    def relay() -> None:
        with app.app_context():
            counts.append(relay_outbox(limit=10))
            while (n := relay_outbox(limit=10)) > 0:
                counts.append(n)
            db.session.remove()

    threads = [threading.Thread(target=relay) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sum(counts) == 50
    ids = [m["headers"]["argsrepr"] for m in queued_messages(app)]
    assert len(ids) == len(set(ids)) == 50


@pytest.fixture
def order_id(app_ctx, customer):
    product = make_product(db.session, stock=5)
    order_id = place_order_directly(db.session, customer.id, {product.id: 1}).id
    db.session.execute(OutboxMessage.__table__.delete())
    db.session.commit()
    return order_id


def test_events_of_an_aggregate_nobody_references_any_more_still_reach_the_outbox(order_id):
    import gc

    with UnitOfWork(relay_after_commit=False) as uow:
        order = uow.orders.find(order_id)
        order.events.append(event(3))
        del order
        gc.collect()  # the session holds clean entities weakly; the repository does not
        uow.commit()
    assert [m.payload["order_id"] for m in messages()] == ["order-3"]


def test_events_of_a_rolled_back_unit_of_work_are_discarded(order_id):
    with UnitOfWork(relay_after_commit=False) as uow:
        uow.orders.find(order_id).events.append(event(4))
    with UnitOfWork(relay_after_commit=False) as uow:
        uow.orders.find(order_id)
        uow.commit()
    assert messages() == []


def test_every_handler_runs_even_when_one_fails(app_ctx, monkeypatch):
    calls: list[str] = []

    def boom(e, ctx):
        calls.append("boom")
        raise RuntimeError("first handler failed")

    monkeypatch.setitem(
        handlers.EVENT_HANDLERS, OrderDelivered, [boom, lambda e, ctx: calls.append("second")]
    )
    with UnitOfWork(relay_after_commit=False) as uow:
        uow.record(event())
        uow.commit()
    (row,) = messages()
    with pytest.raises(RuntimeError):
        handle_message(row.id, handlers.EVENT_HANDLERS)
    assert calls == ["boom", "second"]
    db.session.rollback()
    assert messages()[0].processed_at is None
