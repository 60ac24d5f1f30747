"""Admin operations over HTTP: feature toggles, notifications and reconciliations."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
import redis as redis_lib
from sqlalchemy import text

from app.adapters import queue
from app.domain.base import utcnow
from app.domain.notifications import N_FAILED, N_PENDING, N_SENT, Notification
from app.domain.operations import R_COMPLETED, RUNNING
from app.extensions import db
from app.services.features import CHECKOUT, feature_cache, is_enabled
from tests.api.test_conventions import assert_problem
from tests.tasks import run_task

UNKNOWN = uuid.UUID("01900000-0000-7000-8000-000000000000")
NOTIFICATION_FIELDS = {
    "notificationId",
    "event",
    "message",
    "status",
    "attempts",
    "lastError",
    "createdAt",
    "sentAt",
    "deliveries",
    "permanentFailure",
}


@pytest.fixture(autouse=True)
def _fresh_feature_cache_and_breaker():
    feature_cache.invalidate()
    queue.publish_breaker.close()
    yield
    feature_cache.invalidate()  # other tests must not see a toggle switched here
    queue.publish_breaker.close()


def queued(app, task: str) -> list[list[Any]]:
    client = redis_lib.Redis.from_url(app.config["REDIS_URL"])
    raw = [m for name in (queue.DEFAULT_QUEUE, queue.NOTIFICATIONS_QUEUE) for m in client.lrange(name, 0, -1)]
    messages = [json.loads(m) for m in raw]
    return [json.loads(base64.b64decode(m["body"]))[0] for m in messages if m["headers"]["task"] == task]


def add_notification(app, user_id: uuid.UUID, **values: Any) -> uuid.UUID:
    with app.app_context():
        notification = Notification(
            user_id=user_id,
            event_id=values.pop("event_id", 1),
            event=values.pop("event", "OrderPlaced"),
            channel="EMAIL",
            recipient=values.pop("recipient", "someone@example.com"),
            subject="Subject",
            message=values.pop("message", "Hello"),
            status=values.pop("status", N_PENDING),
            attempts=values.pop("attempts", 0),
            created_at=values.pop("created_at", utcnow()),
            **values,
        )
        db.session.add(notification)
        db.session.commit()
        return notification.id


# ---- feature toggles --------------------------------------------------------------------------------


def test_admins_list_the_feature_toggles(client, admin, token_for):
    response = client.get("/admin/features", headers=token_for(admin))
    assert response.status_code == 200
    assert response.get_json() == {
        "items": [
            {
                "name": "checkout",
                "enabled": True,
                "rolloutPercent": 100,
                "description": "POST /orders accepts new orders",
            },
            {
                "name": "payment-retry",
                "enabled": True,
                "rolloutPercent": 100,
                "description": "Customers retry a failed payment",
            },
            {
                "name": "returns",
                "enabled": True,
                "rolloutPercent": 100,
                "description": "Customers request returns of delivered orders",
            },
        ]
    }


def test_switching_a_toggle_is_seen_at_once_by_this_process(app, client, admin, token_for):
    with app.app_context():
        assert is_enabled(CHECKOUT, ttl=3600) is True  # now cached for an hour
    response = client.put("/admin/features/checkout", json={"enabled": False}, headers=token_for(admin))
    assert response.status_code == 200
    assert response.get_json() == {
        "name": "checkout",
        "enabled": False,
        "rolloutPercent": 100,
        "description": "POST /orders accepts new orders",
    }
    with app.app_context():
        assert is_enabled(CHECKOUT, ttl=3600) is False
    listed = client.get("/admin/features", headers=token_for(admin)).get_json()
    assert listed["items"][0]["enabled"] is False


def test_an_unknown_toggle_is_404(client, admin, token_for):
    assert_problem(client.put("/admin/features/nope", json={"enabled": True}, headers=token_for(admin)), 404)


@pytest.mark.parametrize("body", [{"enabled": "false"}, {"enabled": 1}, {}, {"enabled": True, "name": "x"}])
def test_a_toggle_takes_exactly_one_boolean(client, admin, token_for, body):
    problem = assert_problem(client.put("/admin/features/checkout", json=body, headers=token_for(admin)), 422)
    assert set(problem["errors"]) <= {"enabled", "name"}


def test_the_rollout_percentage_is_set_and_stays_when_left_out(client, admin, token_for):
    headers = token_for(admin)
    response = client.put(
        "/admin/features/returns", json={"enabled": True, "rolloutPercent": 10}, headers=headers
    )
    assert response.status_code == 200
    assert response.get_json()["rolloutPercent"] == 10
    response = client.put("/admin/features/returns", json={"enabled": False}, headers=headers)
    assert response.get_json() == {
        "name": "returns",
        "enabled": False,
        "rolloutPercent": 10,
        "description": "Customers request returns of delivered orders",
    }
    for percent in (0, 100):
        body = {"enabled": True, "rolloutPercent": percent}
        assert (
            client.put("/admin/features/returns", json=body, headers=headers).get_json()["rolloutPercent"]
            == percent
        )


@pytest.mark.parametrize("percent", [-1, 101, 50.5, "50", True, None, 10**20])
def test_a_rollout_percentage_is_an_integer_from_0_to_100(client, admin, token_for, percent):
    headers = token_for(admin)
    body = {"enabled": True, "rolloutPercent": percent}
    problem = assert_problem(client.put("/admin/features/payment-retry", json=body, headers=headers), 422)
    assert set(problem["errors"]) == {"rolloutPercent"}
    listed = client.get("/admin/features", headers=headers).get_json()["items"]
    assert {f["name"]: f["rolloutPercent"] for f in listed}["payment-retry"] == 100


def test_a_partly_rolled_out_toggle_is_sticky_per_user(app, client, admin, token_for):
    from app.domain.rollout import rollout_bucket

    users = [uuid.UUID(int=i + 1) for i in range(200)]
    body = {"enabled": True, "rolloutPercent": 30}
    assert client.put("/admin/features/returns", json=body, headers=token_for(admin)).status_code == 200
    with app.app_context():
        first = [is_enabled("returns", ttl=0, user_id=u) for u in users]
        again = [is_enabled("returns", ttl=0, user_id=u) for u in users]
        anonymous = is_enabled("returns", ttl=0)
    assert first == again == [rollout_bucket("returns", u) < 30 for u in users]
    assert 0 < sum(first) < len(users)
    assert anonymous is False


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/admin/features"),
        ("put", "/admin/features/checkout"),
        ("post", "/admin/reconciliations"),
        ("get", f"/admin/reconciliations/{UNKNOWN}"),
        ("post", f"/admin/notifications/{UNKNOWN}/retry"),
    ],
)
def test_admin_endpoints_are_403_for_customers_and_401_without_a_token(
    client, customer, token_for, method, path
):
    body = {"enabled": False} if method == "put" else None
    assert_problem(getattr(client, method)(path, json=body, headers=token_for(customer)), 403)
    assert_problem(getattr(client, method)(path, json=body), 401)


# ---- notifications ------------------------------------------------------------------------------------


def test_users_list_their_notifications_newest_first(app, client, customer, token_for):
    older = add_notification(app, customer.id, event_id=1, created_at=utcnow().replace(year=2020))
    newer = add_notification(
        app, customer.id, event_id=2, event="OrderShipped", status=N_SENT, attempts=1, sent_at=utcnow()
    )
    response = client.get(f"/users/{customer.id}/notifications", headers=token_for(customer))
    assert response.status_code == 200
    body = response.get_json()
    assert (body["page"], body["pageSize"], body["totalItems"], body["totalPages"]) == (1, 20, 2, 1)
    assert [n["notificationId"] for n in body["items"]] == [str(newer), str(older)]
    first = body["items"][0]
    assert set(first) == NOTIFICATION_FIELDS
    assert (first["event"], first["status"], first["attempts"], first["lastError"]) == (
        "OrderShipped",
        "SENT",
        1,
        None,
    )
    assert first["sentAt"] and first["createdAt"]


def test_notifications_are_paginated(app, client, customer, token_for):
    for n in range(3):
        add_notification(app, customer.id, event_id=n)
    page = client.get(f"/users/{customer.id}/notifications?page=2&pageSize=2", headers=token_for(customer))
    body = page.get_json()
    assert (len(body["items"]), body["totalItems"], body["totalPages"]) == (1, 3, 2)


def test_another_customers_notifications_are_404_and_an_admin_sees_them(
    app, client, customer, make_user, admin, token_for
):
    add_notification(app, customer.id)
    other = make_user()
    assert_problem(client.get(f"/users/{customer.id}/notifications", headers=token_for(other)), 404)
    seen = client.get(f"/users/{customer.id}/notifications", headers=token_for(admin)).get_json()
    assert seen["totalItems"] == 1


def test_an_admin_asking_for_an_unknown_user_gets_404(client, admin, token_for):
    assert_problem(client.get(f"/users/{uuid.uuid4()}/notifications", headers=token_for(admin)), 404)


def test_retrying_a_failed_notification_queues_it_with_a_new_round(app, client, admin, customer, token_for):
    notification_id = add_notification(app, customer.id, status=N_FAILED, attempts=5, last_error="refused")
    response = client.post(f"/admin/notifications/{notification_id}/retry", headers=token_for(admin))
    assert response.status_code == 202
    body = response.get_json()
    assert set(body) == NOTIFICATION_FIELDS
    assert (body["notificationId"], body["status"], body["attempts"]) == (str(notification_id), "PENDING", 0)
    assert body["lastError"] == "refused"
    assert queued(app, queue.DELIVER_NOTIFICATION) == [[str(notification_id)]]


def test_retrying_a_sent_notification_is_409_and_an_unknown_one_404(app, client, admin, customer, token_for):
    sent = add_notification(app, customer.id, status=N_SENT, attempts=1, sent_at=utcnow())
    assert_problem(client.post(f"/admin/notifications/{sent}/retry", headers=token_for(admin)), 409)
    assert_problem(client.post(f"/admin/notifications/{uuid.uuid4()}/retry", headers=token_for(admin)), 404)
    assert queued(app, queue.DELIVER_NOTIFICATION) == []


# ---- reconciliations ----------------------------------------------------------------------------------


def test_an_admin_starts_a_reconciliation_and_reads_its_record(app, client, admin, token_for):
    response = client.post("/admin/reconciliations", headers=token_for(admin))
    assert response.status_code == 202
    (run_id,) = response.get_json().values()
    assert set(response.get_json()) == {"reconciliationId"}
    assert queued(app, queue.RECONCILE_STOCK) == [[run_id]]

    running = client.get(f"/admin/reconciliations/{run_id}", headers=token_for(admin)).get_json()
    assert (running["status"], running["finishedAt"]) == (RUNNING, None)

    with app.app_context():
        db.session.execute(
            text(
                "INSERT INTO products (id, name, description, price, stock, created_at, updated_at) "
                "VALUES (gen_random_uuid(), 'Drifted', '', 1, 3, now(), now())"
            )
        )
        db.session.commit()
    run_task(app, queue.RECONCILE_STOCK, run_id)

    done = client.get(f"/admin/reconciliations/{run_id}", headers=token_for(admin)).get_json()
    assert done["status"] == R_COMPLETED
    assert (done["productsChecked"], done["ordersExpired"]) == (1, 0)
    assert [(d["stockBefore"], d["stockAfter"]) for d in done["discrepancies"]] == [(3, 0)]
    assert done["startedAt"] and done["finishedAt"]
    assert {
        "reconciliationId",
        "status",
        "startedAt",
        "finishedAt",
        "productsChecked",
        "ordersExpired",
        "discrepancies",
    } <= set(done)


def test_an_unknown_reconciliation_is_404(client, admin, token_for):
    assert_problem(client.get(f"/admin/reconciliations/{uuid.uuid4()}", headers=token_for(admin)), 404)


def test_a_reconciliation_requested_while_the_queue_is_down_is_503_and_recorded_failed(
    app, client, admin, token_for, monkeypatch
):
    monkeypatch.setitem(app.extensions, "celery", _UnreachableBroker(app.extensions["celery"]))
    response = client.post("/admin/reconciliations", headers=token_for(admin))
    assert_problem(response, 503)
    assert response.headers["Retry-After"]
    with app.app_context():
        (status,) = db.session.execute(text("SELECT status FROM reconciliations")).scalars().all()
    assert status == "FAILED"


class _UnreachableBroker:
    def __init__(self, celery: Any) -> None:
        self._celery = celery

    def send_task(self, *args: Any, **kwargs: Any) -> None:
        raise ConnectionError("redis is down")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._celery, name)


def test_openapi_documents_the_admin_operations(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    assert {
        "/admin/features",
        "/admin/features/{name}",
        "/admin/reconciliations",
        "/admin/reconciliations/{reconciliationId}",
        "/admin/notifications/{notificationId}/retry",
        "/users/{userId}/notifications",
    } <= set(paths)
    assert "409" in paths["/admin/notifications/{notificationId}/retry"]["post"]["responses"]
