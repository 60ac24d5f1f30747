"""Webhooks against real Postgres, Redis and a real HTTP receiver on loopback (SPEC §5.4).

Fan-out exactly once under redelivery (sequential and concurrent), delivery signed as the
``standardwebhooks`` library verifies it, retries on the schedule, rotation overlap, disabling on
410 and on repeated failures, the per-endpoint bound, SSRF at delivery, no redirects.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import redis
from sqlalchemy import event, func, select, update
from standardwebhooks import Webhook, WebhookVerificationError

from app.adapters import queue, webhook_http
from app.api import webhook_payloads
from app.domain.actors import Actor
from app.domain.base import utcnow
from app.domain.events import OrderPlaced, PaymentCompleted, ReturnRequested, WebhookEndpointDisabled
from app.domain.outbox import OutboxMessage
from app.domain.webhooks import WebhookDelivery, WebhookEndpoint, WebhookMessage
from app.extensions import db
from app.services import webhooks
from app.services.dispatch import EventContext, handle_message
from app.services.handlers import EVENT_HANDLERS
from app.services.unit_of_work import UnitOfWork
from tests.integration.test_returns import delivered_order  # noqa: F401 (a fixture)
from tests.shop import make_product, place_order_directly
from tests.webhook_receiver import running_receiver

SETTINGS = webhooks.DeliverySettings(
    timeout=2.0,
    retry_schedule=(5, 300),
    disable_after_failures=3,
    allow_private_urls=True,
    require_https=False,
    endpoint_concurrency=2,
)
OPEN = webhooks.UrlPolicy(allow_private=True, require_https=False)


@pytest.fixture(autouse=True)
def _breaker_closed() -> Any:
    queue.publish_breaker.close()
    yield
    queue.publish_breaker.close()


@pytest.fixture
def admin_actor(app_ctx: Any, admin: Any) -> Actor:
    return Actor(admin.id, "admin")


@pytest.fixture
def order(app_ctx: Any, customer: Any) -> Any:
    product = make_product(db.session, price="3.00", stock=10)
    return place_order_directly(db.session, customer.id, {product.id: 2})


def endpoint(actor: Actor, url: str, events: list[str] | None = None) -> webhooks.CreatedEndpoint:
    return webhooks.create_endpoint(actor, url, events or ["*"], "", OPEN)


def deliveries() -> list[WebhookDelivery]:
    db.session.rollback()
    return list(db.session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.created_at)))


def outbox_id_of(event: Any) -> int:
    with UnitOfWork(relay_after_commit=False) as uow:
        uow.record(event)
        uow.commit()
        return uow.outbox_ids[0]


def deliver(
    delivery_id: Any, settings: webhooks.DeliverySettings = SETTINGS, **kwargs: Any
) -> webhooks.DeliveryOutcome:
    return webhooks.deliver(
        delivery_id, settings=settings, render=webhook_payloads.render, send=webhook_http.post, **kwargs
    )


def make_due(delivery_id: Any) -> None:
    db.session.execute(
        update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(next_attempt_at=utcnow())
    )
    db.session.commit()


# ---- fan-out ----------------------------------------------------------------------------------


def test_an_event_fans_out_to_each_subscribed_enabled_endpoint_once_even_when_redelivered(
    admin_actor: Actor, order: Any
) -> None:
    all_events = endpoint(admin_actor, "http://127.0.0.1:9/a")
    paid_only = endpoint(admin_actor, "http://127.0.0.1:9/b", ["order.paid"])
    placed = endpoint(admin_actor, "http://127.0.0.1:9/c", ["order.placed"])
    webhooks.update_endpoint(admin_actor, placed.endpoint.id, {"enabled": False}, OPEN)
    event = OrderPlaced(order_id=str(order.id), user_id=str(order.user_id), payment_id=str(order.payment.id))
    message_id = outbox_id_of(event)
    context = EventContext(event_id=message_id, request_id="req-1")
    for _ in range(3):  # the dispatch task delivered three times
        webhooks.fan_out(event, context)
    found = deliveries()
    assert [d.endpoint_id for d in found] == [all_events.endpoint.id]
    assert db.session.scalar(select(func.count()).select_from(WebhookMessage)) == 1
    assert paid_only.endpoint.id not in {d.endpoint_id for d in found}


def test_concurrent_redeliveries_of_one_event_create_one_delivery(
    admin_actor: Actor, app: Any, order: Any
) -> None:
    endpoint(admin_actor, "http://127.0.0.1:9/a")
    endpoint(admin_actor, "http://127.0.0.1:9/b")
    event = PaymentCompleted(
        order_id=str(order.id), user_id=str(order.user_id), payment_id=str(order.payment.id)
    )
    message_id = outbox_id_of(event)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def dispatch() -> None:
        with app.app_context():
            try:
                barrier.wait()
                webhooks.fan_out(event, EventContext(event_id=message_id, request_id=None))
            except BaseException as exc:
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=dispatch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(deliveries()) == 2
    assert db.session.scalar(select(func.count()).select_from(WebhookMessage)) == 1


def test_the_dispatch_of_a_mapped_event_runs_the_fan_out(admin_actor: Actor, order: Any) -> None:
    endpoint(admin_actor, "http://127.0.0.1:9/a", ["order.placed"])
    event = OrderPlaced(order_id=str(order.id), user_id=str(order.user_id), payment_id=str(order.payment.id))
    with UnitOfWork(relay_after_commit=False) as uow:
        uow.record(event)
        uow.commit()
        outbox_id = uow.outbox_ids[0]
    assert webhooks.fan_out in EVENT_HANDLERS[OrderPlaced]
    handle_message(outbox_id, {OrderPlaced: [webhooks.fan_out]})
    handle_message(outbox_id, {OrderPlaced: [webhooks.fan_out]})  # processed: nothing again
    assert len(deliveries()) == 1
    assert db.session.get(OutboxMessage, outbox_id).processed_at is not None


# ---- delivery ---------------------------------------------------------------------------------


def test_a_delivery_is_signed_as_the_library_verifies_and_carries_the_order(
    admin_actor: Actor, order: Any
) -> None:
    with running_receiver() as receiver:
        created = endpoint(admin_actor, receiver.url, ["order.placed"])
        event = OrderPlaced(
            order_id=str(order.id), user_id=str(order.user_id), payment_id=str(order.payment.id)
        )
        webhooks.fan_out(event, EventContext(event_id=outbox_id_of(event), request_id=None))
        (delivery,) = deliveries()
        outcome = deliver(delivery.id)
        assert outcome.status == "SUCCEEDED"
        (request,) = receiver.received
    payload = Webhook(created.secret).verify(request.body, request.headers)
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"].startswith("msg_")
    assert payload["type"] == "order.placed"
    assert payload["timestamp"].endswith("Z")
    data = payload["data"]
    assert data["orderId"] == str(order.id) and data["status"] == "PLACED"
    assert data["totalAmount"] == 6.0 and data["orderItems"][0]["quantity"] == 2
    assert data["payment"]["paymentId"] == str(order.payment.id)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 43 + "=").verify(request.body, request.headers)
    (stored,) = deliveries()
    assert stored.status == "SUCCEEDED" and stored.attempts == 1 and stored.last_status_code == 200
    assert stored.delivered_at is not None and stored.next_attempt_at is None


def test_return_events_carry_the_return_as_the_api_shows_it(
    admin_actor: Actor,
    admin: Any,
    client: Any,
    customer: Any,
    delivered_order: Any,  # noqa: F811 (the fixture imported above)
    token_for: Any,
) -> None:
    order_id, product_id = delivered_order(2)
    url = f"/orders/{order_id}/returns"
    line = {"items": [{"productId": str(product_id), "quantity": 1}], "reason": "DAMAGED"}
    created = client.post(url, json=line, headers=token_for(customer)).get_json()
    with running_receiver() as receiver:
        hook = endpoint(admin_actor, receiver.url, ["return.requested", "return.received"])
        requested = ReturnRequested(
            order_id=str(order_id),
            user_id=str(customer.id),
            return_id=created["returnId"],
            refund_amount=str(created["refundAmount"]),
        )
        webhooks.fan_out(requested, EventContext(event_id=outbox_id_of(requested), request_id=None))
        (delivery,) = deliveries()
        assert deliver(delivery.id).status == "SUCCEEDED"
        (request,) = receiver.received
    payload = Webhook(hook.secret).verify(request.body, request.headers)
    shown = client.get(f"{url}/{created['returnId']}", headers=token_for(admin)).get_json()
    assert payload["type"] == "return.requested"
    assert payload["data"] == shown and shown["status"] == "REQUESTED"
    assert payload["data"]["items"][0]["productId"] == str(product_id)


def test_a_failure_is_retried_on_the_schedule_with_the_same_id_and_body(
    admin_actor: Actor, order: Any
) -> None:
    with running_receiver(script=[500, 503]) as receiver:
        endpoint(admin_actor, receiver.url)
        event = OrderPlaced(
            order_id=str(order.id), user_id=str(order.user_id), payment_id=str(order.payment.id)
        )
        webhooks.fan_out(event, EventContext(event_id=outbox_id_of(event), request_id=None))
        (delivery,) = deliveries()
        before = utcnow()
        first = deliver(delivery.id)
        assert first.status == "PENDING" and first.retry_in == 5.0
        (pending,) = deliveries()
        assert pending.last_status_code == 500 and pending.last_error.startswith("HTTP 500")
        assert timedelta(seconds=4) < pending.next_attempt_at - before < timedelta(seconds=7)
        assert deliver(delivery.id).status == "SKIPPED"  # not due yet: a duplicate task does nothing
        make_due(delivery.id)
        second = deliver(delivery.id)
        assert second.retry_in == 300.0
        make_due(delivery.id)
        assert deliver(delivery.id).status == "SUCCEEDED"
        requests = receiver.received
    assert len(requests) == 3
    assert len({r.headers["webhook-id"] for r in requests}) == 1
    assert len({r.body for r in requests}) == 1
    (done,) = deliveries()
    assert done.attempts == 3 and done.status == "SUCCEEDED"


def test_a_spent_schedule_fails_the_delivery_and_repeated_failures_disable_the_endpoint(
    admin_actor: Actor, order: Any
) -> None:
    settings = webhooks.DeliverySettings(
        **{**SETTINGS.__dict__, "retry_schedule": (), "disable_after_failures": 2}
    )
    with running_receiver(default_status=500) as receiver:
        created = endpoint(admin_actor, receiver.url)
        for _ in range(2):
            event = OrderPlaced(
                order_id=str(order.id), user_id=str(order.user_id), payment_id=str(order.payment.id)
            )
            webhooks.fan_out(event, EventContext(event_id=outbox_id_of(event), request_id=None))
        first, second = deliveries()
        assert deliver(first.id, settings).status == "FAILED"
        db.session.rollback()
        assert db.session.get(WebhookEndpoint, created.endpoint.id).enabled is True
        assert deliver(second.id, settings).status == "FAILED"
    db.session.rollback()
    disabled = db.session.get(WebhookEndpoint, created.endpoint.id)
    assert disabled.enabled is False and "2 deliveries in a row failed" in disabled.disabled_reason
    told = db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.event_type == "WebhookEndpointDisabled")
    ).all()
    assert len(told) == 1 and told[0].payload["webhook_id"] == str(created.endpoint.id)


def test_410_fails_the_delivery_and_disables_the_endpoint_at_once(admin_actor: Actor, order: Any) -> None:
    with running_receiver(default_status=410) as receiver:
        created = endpoint(admin_actor, receiver.url)
        event = OrderPlaced(
            order_id=str(order.id), user_id=str(order.user_id), payment_id=str(order.payment.id)
        )
        webhooks.fan_out(event, EventContext(event_id=outbox_id_of(event), request_id=None))
        (delivery,) = deliveries()
        assert deliver(delivery.id).status == "FAILED"
    db.session.rollback()
    assert db.session.get(WebhookEndpoint, created.endpoint.id).enabled is False
    assert (
        db.session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.event_type == "WebhookEndpointDisabled")
        )
        == 1
    )
    # A later event no longer fans out to it.
    event = PaymentCompleted(
        order_id=str(order.id), user_id=str(order.user_id), payment_id=str(order.payment.id)
    )
    webhooks.fan_out(event, EventContext(event_id=outbox_id_of(event), request_id=None))
    assert len(deliveries()) == 1


def test_after_a_rotation_both_secrets_sign_for_24_hours(admin_actor: Actor, order: Any) -> None:
    with running_receiver() as receiver:
        created = endpoint(admin_actor, receiver.url)
        rotated = webhooks.rotate_secret(admin_actor, created.endpoint.id)
        assert rotated.secret != created.secret
        event = OrderPlaced(
            order_id=str(order.id), user_id=str(order.user_id), payment_id=str(order.payment.id)
        )
        webhooks.fan_out(event, EventContext(event_id=outbox_id_of(event), request_id=None))
        (delivery,) = deliveries()
        deliver(delivery.id)
        # 25 h later only the new secret signs.
        webhooks.send_test_event(admin_actor, created.endpoint.id)
        test_delivery = next(d for d in deliveries() if d.id != delivery.id)
        later = utcnow() + timedelta(hours=25)
        deliver(test_delivery.id, now=lambda: later)
        first, second = receiver.received
    assert len(first.headers["webhook-signature"].split(" ")) == 2
    Webhook(created.secret).verify(first.body, first.headers)
    Webhook(rotated.secret).verify(first.body, first.headers)
    # 25 h later: one signature, the new secret's (the library signs; its timestamp check aside).
    stamp = datetime.fromtimestamp(int(second.headers["webhook-timestamp"]), UTC)
    msg_id, body = second.headers["webhook-id"], second.body.decode()
    assert second.headers["webhook-signature"] == Webhook(rotated.secret).sign(msg_id, stamp, body)
    assert json.loads(second.body)["type"] == "webhook.test"


def test_the_ssrf_check_runs_again_at_delivery(admin_actor: Actor, order: Any) -> None:
    strict = webhooks.DeliverySettings(**{**SETTINGS.__dict__, "allow_private_urls": False})
    with running_receiver() as receiver:
        endpoint(admin_actor, receiver.url)  # allowed when created (development)
        event = OrderPlaced(
            order_id=str(order.id), user_id=str(order.user_id), payment_id=str(order.payment.id)
        )
        webhooks.fan_out(event, EventContext(event_id=outbox_id_of(event), request_id=None))
        (delivery,) = deliveries()
        outcome = deliver(delivery.id, strict)
        assert receiver.received == []
    assert outcome.status == "PENDING" and "non-public address" in (outcome.error or "")


def test_redirects_are_not_followed(admin_actor: Actor, order: Any) -> None:
    with running_receiver(
        default_status=302, extra_headers={"Location": "http://127.0.0.1:9/elsewhere"}
    ) as receiver:
        endpoint(admin_actor, receiver.url)
        event = OrderPlaced(
            order_id=str(order.id), user_id=str(order.user_id), payment_id=str(order.payment.id)
        )
        webhooks.fan_out(event, EventContext(event_id=outbox_id_of(event), request_id=None))
        (delivery,) = deliveries()
        outcome = deliver(delivery.id)
        assert len(receiver.received) == 1
    assert outcome.status == "PENDING" and outcome.status_code == 302


def test_a_slow_endpoint_times_out(admin_actor: Actor, order: Any) -> None:
    quick = webhooks.DeliverySettings(**{**SETTINGS.__dict__, "timeout": 0.5})
    with running_receiver(delay=2.0) as receiver:
        endpoint(admin_actor, receiver.url)
        event = OrderPlaced(
            order_id=str(order.id), user_id=str(order.user_id), payment_id=str(order.payment.id)
        )
        webhooks.fan_out(event, EventContext(event_id=outbox_id_of(event), request_id=None))
        (delivery,) = deliveries()
        outcome = deliver(delivery.id, quick)
    assert outcome.status == "PENDING" and outcome.status_code is None and outcome.error == "timeout"


def test_no_more_than_the_bound_of_deliveries_run_at_once_per_endpoint(
    admin_actor: Actor, app: Any, order: Any
) -> None:
    with running_receiver(delay=0.5) as receiver:
        endpoint(admin_actor, receiver.url)
        for _ in range(6):
            event = OrderPlaced(
                order_id=str(order.id), user_id=str(order.user_id), payment_id=str(order.payment.id)
            )
            webhooks.fan_out(event, EventContext(event_id=outbox_id_of(event), request_id=None))
        ids = [d.id for d in deliveries()]
        first_outcomes: list[webhooks.DeliveryOutcome] = []
        final: list[str] = []
        barrier = threading.Barrier(len(ids))

        def attempt(delivery_id: Any) -> None:
            with app.app_context():
                barrier.wait()
                outcome = deliver(delivery_id)
                first_outcomes.append(outcome)
                while outcome.retry_in is not None:  # the endpoint was full: as the task would, again
                    time.sleep(0.05)
                    outcome = deliver(delivery_id)
                final.append(outcome.status)
                db.session.remove()

        threads = [threading.Thread(target=attempt, args=(i,)) for i in ids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert receiver.max_in_flight <= 2
        assert len(receiver.received) == len(ids)
    refused = [o for o in first_outcomes if o.status == "SKIPPED"]
    assert len(refused) >= len(ids) - 2 and all(o.retry_in for o in refused)
    assert final == ["SUCCEEDED"] * len(ids)
    assert all(d.attempts == 1 for d in deliveries())  # a refused claim is not an attempt


def test_the_beat_job_queues_what_is_due_once(admin_actor: Actor, app: Any, order: Any) -> None:
    import redis

    endpoint(admin_actor, "http://127.0.0.1:9/a")
    event = OrderPlaced(order_id=str(order.id), user_id=str(order.user_id), payment_id=str(order.payment.id))
    webhooks.fan_out(event, EventContext(event_id=outbox_id_of(event), request_id=None))
    (delivery,) = deliveries()
    assert webhooks.queue_due_deliveries() == 0  # the fan-out queued it just now
    later = utcnow() + timedelta(minutes=2)
    assert webhooks.queue_due_deliveries(now=later) == 1
    assert webhooks.queue_due_deliveries(now=later) == 0
    client = redis.Redis.from_url(app.config["REDIS_URL"])
    queued = [json.loads(raw) for raw in client.lrange(queue.WEBHOOKS_QUEUE, 0, -1)]
    assert [m["headers"]["task"] for m in queued] == [queue.DELIVER_WEBHOOK] * 2
    assert {m["headers"]["argsrepr"] for m in queued} == {repr([str(delivery.id)])}


def test_a_disabled_endpoint_is_e_mailed_to_every_live_admin(
    app: Any, app_ctx: Any, admin: Any, make_user: Any, monkeypatch: Any
) -> None:
    from app.devtools.services import free_port
    from app.devtools.smtp_sink import SmtpSink
    from tests.tasks import run_task

    sink = SmtpSink("127.0.0.1", free_port()).start()
    monkeypatch.setitem(app.config, "SMTP_URL", sink.url)
    try:
        second_admin = make_user("admin")
        make_user("customer")
        event = WebhookEndpointDisabled(webhook_id="wh-1", url="https://erp.example/hook", reason="410 Gone")
        webhooks.on_endpoint_disabled(event, EventContext(event_id=77, request_id=None))
        client = redis.Redis.from_url(app.config["REDIS_URL"])
        (queued,) = [json.loads(raw) for raw in client.lrange(queue.DEFAULT_QUEUE, 0, -1)]
        assert queued["headers"]["task"] == queue.EMAIL_ADMINS_WEBHOOK_DISABLED
        sent = run_task(
            app, queue.EMAIL_ADMINS_WEBHOOK_DISABLED, "wh-1", "https://erp.example/hook", "410 Gone", 77
        )
        assert sent == 2
        assert sorted(m.rcpt_tos[0] for m in sink.received) == sorted([admin.email, second_admin.email])
        assert all("https://erp.example/hook" in m.body("plain") for m in sink.received)
        assert all(m.subject == "A webhook endpoint was disabled" for m in sink.received)
    finally:
        sink.stop()


# ---- the cost of a delivery ---------------------------------------------------------------------


@contextmanager
def counted_statements() -> Iterator[list[str]]:
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", count)


def test_a_successful_attempt_is_three_statements_and_the_body_is_rendered_once(
    admin_actor: Actor, order: Any
) -> None:
    with running_receiver() as receiver:
        endpoint(admin_actor, receiver.url)
        endpoint(admin_actor, receiver.url)
        event_ = OrderPlaced(
            order_id=str(order.id), user_id=str(order.user_id), payment_id=str(order.payment.id)
        )
        webhooks.fan_out(event_, EventContext(event_id=outbox_id_of(event_), request_id=None))
        first, second = (d.id for d in deliveries())
        db.session.rollback()
        with counted_statements() as rendering:
            assert deliver(first).status == "SUCCEEDED"
        with counted_statements() as stored:
            assert deliver(second).status == "SUCCEEDED"
        bodies = {r.body for r in receiver.received}
    # The claim (which reads the endpoint and the message), the count of the endpoint's leases,
    # the outcome; the first attempt also reads the order to render it, and stores the body.
    assert len(stored) == 3, stored
    assert len(rendering) > 4 and sum("UPDATE webhook_messages" in s for s in rendering) == 1
    assert len(bodies) == 1


def test_a_claim_that_raced_past_the_bound_steps_back(
    admin_actor: Actor, app: Any, database_url: str, order: Any
) -> None:
    """The claim's own count sees the leases committed before it began; one committed while it ran
    is only seen by the count after its commit, which then gives the lease back."""
    one_at_a_time = webhooks.DeliverySettings(**{**SETTINGS.__dict__, "endpoint_concurrency": 1})
    endpoint(admin_actor, "http://127.0.0.1:9/a")
    for _ in range(2):
        event_ = OrderPlaced(
            order_id=str(order.id), user_id=str(order.user_id), payment_id=str(order.payment.id)
        )
        webhooks.fan_out(event_, EventContext(event_id=outbox_id_of(event_), request_id=None))
    first, second = deliveries()
    db.session.rollback()
    outcomes: list[webhooks.DeliveryOutcome] = []
    with psycopg.connect(database_url) as blocker, psycopg.connect(database_url, autocommit=True) as other:
        # Hold the second delivery's row so that its claim, once its snapshot is taken, waits.
        blocker.execute("SELECT 1 FROM webhook_deliveries WHERE id = %s FOR UPDATE", (second.id,))

        def claim_second() -> None:
            with app.app_context():
                outcomes.append(deliver(second.id, one_at_a_time))
                db.session.remove()

        racer = threading.Thread(target=claim_second)
        racer.start()
        deadline = time.monotonic() + 10
        while not other.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND datname = current_database()"
        ).fetchone()[0]:
            assert time.monotonic() < deadline, "the claim never waited"
            time.sleep(0.01)
        # Meanwhile the first delivery is claimed and committed: the waiting claim cannot see it.
        other.execute(
            "UPDATE webhook_deliveries SET lease_until = now() + interval '1 minute' WHERE id = %s",
            (first.id,),
        )
        blocker.commit()
        racer.join()
    (outcome,) = outcomes
    assert outcome.status == "SKIPPED" and outcome.retry_in == webhooks.BUSY_RETRY_SECONDS
    stepped_back = next(d for d in deliveries() if d.id == second.id)
    assert stepped_back.lease_until is None and stepped_back.attempts == 0
    assert stepped_back.status == "PENDING"
