"""SPEC §5.4: the admin's webhook endpoints — every route, its errors, and its audit entries."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from sqlalchemy import select

from app.adapters import queue
from app.domain.webhooks import WebhookDelivery
from app.extensions import db
from tests.conftest import make_app

URL = "http://127.0.0.1:9/hooks"
SECRET = re.compile(r"^whsec_[A-Za-z0-9+/]{43}=$")  # base64 of 32 bytes


@pytest.fixture(autouse=True)
def _breaker_closed() -> Any:
    queue.publish_breaker.close()
    yield
    queue.publish_breaker.close()


@pytest.fixture
def as_admin(admin: Any, token_for: Any) -> dict[str, str]:
    return token_for(admin)


def create(client: FlaskClient, headers: dict[str, str], **overrides: Any) -> dict[str, Any]:
    body = {"url": URL, "events": ["order.placed", "order.paid"], "description": "ERP"} | overrides
    response = client.post("/admin/webhooks", json=body, headers=headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def audit(client: FlaskClient, headers: dict[str, str], action: str) -> list[dict[str, Any]]:
    return client.get("/admin/audit-log", query_string={"action": action}, headers=headers).json["items"]


def queued_deliveries(app: Any) -> list[str]:
    client = redis.Redis.from_url(app.config["REDIS_URL"])
    return [json.loads(raw)["headers"]["argsrepr"] for raw in client.lrange(queue.WEBHOOKS_QUEUE, 0, -1)]


def test_creating_an_endpoint_shows_its_secret_once(client: FlaskClient, as_admin: dict[str, str]) -> None:
    body = create(client, as_admin)
    assert set(body) >= {"webhookId", "url", "events", "description", "enabled", "secret", "createdAt"}
    assert body["url"] == URL and body["events"] == ["order.placed", "order.paid"] and body["enabled"] is True
    assert SECRET.match(body["secret"])
    read = client.get(f"/admin/webhooks/{body['webhookId']}", headers=as_admin).json
    assert "secret" not in read and read["webhookId"] == body["webhookId"]
    listed = client.get("/admin/webhooks", headers=as_admin).json
    assert listed["totalItems"] == 1 and "secret" not in listed["items"][0]
    (entry,) = audit(client, as_admin, "WEBHOOK_CREATED")
    assert entry["resourceId"] == body["webhookId"] and entry["changes"]["url"] == {"old": None, "new": URL}
    assert body["secret"] not in json.dumps(entry)


def test_all_events_is_a_star(client: FlaskClient, as_admin: dict[str, str]) -> None:
    assert create(client, as_admin, events=["*"])["events"] == ["*"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": URL, "events": ["order.exploded"]}, "events"),
        ({"url": URL, "events": []}, "events"),
        ({"url": URL}, "events"),
        ({"url": "ftp://example.com/x", "events": ["*"]}, "url"),
        ({"url": "http://user:pw@127.0.0.1/x", "events": ["*"]}, "url"),
        ({"url": "not a url", "events": ["*"]}, "url"),
        ({"url": URL, "events": ["*"], "secret": "whsec_mine"}, "secret"),
        ({"url": URL, "events": ["*"], "enabled": False}, "enabled"),
    ],
)
def test_bad_endpoints_are_422_and_nothing_is_created(
    client: FlaskClient, as_admin: dict[str, str], body: dict[str, Any], field: str
) -> None:
    response = client.post("/admin/webhooks", json=body, headers=as_admin)
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert field in response.json["errors"]
    assert client.get("/admin/webhooks", headers=as_admin).json["totalItems"] == 0


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/x",
        "https://10.1.2.3/x",
        "https://169.254.169.254/latest",
        "https://[::1]/x",
        "https://[::ffff:127.0.0.1]/x",
        "https://224.0.0.1/x",
    ],
)
def test_private_addresses_are_refused_when_not_allowed(
    database_url: str, redis_url: str, admin: Any, url: str
) -> None:
    strict = make_app(database_url, redis_url, WEBHOOK_ALLOW_PRIVATE_URLS=False)
    with strict.test_request_context():
        from app.api.security import issue_token

        token, _ = issue_token(admin)
    client = strict.test_client()
    response = client.post(
        "/admin/webhooks", json={"url": url, "events": ["*"]}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 422 and "url" in response.json["errors"]


def test_production_allows_only_https_and_no_private_hosts() -> None:
    from app.config import Settings

    settings = Settings.from_env(
        {
            "APP_ENV": "production",
            "SECRET_KEY": "p" * 40,
            "METRICS_TOKEN": "m",
            "STRIPE_WEBHOOK_SECRET": "whsec_live",
        }
    )
    assert settings.WEBHOOK_ALLOW_PRIVATE_URLS is False
    from app.domain.errors import ValidationFailed
    from app.services.webhooks import UrlPolicy, _checked_url

    with pytest.raises(ValidationFailed):
        _checked_url("http://93.184.215.14/x", UrlPolicy(allow_private=False, require_https=True))


def test_patch_changes_the_given_fields_and_records_them(
    client: FlaskClient, as_admin: dict[str, str]
) -> None:
    webhook_id = create(client, as_admin)["webhookId"]
    response = client.patch(
        f"/admin/webhooks/{webhook_id}", json={"events": ["*"], "enabled": False}, headers=as_admin
    )
    assert response.status_code == 200
    assert response.json["events"] == ["*"] and response.json["enabled"] is False
    assert response.json["url"] == URL and response.json["description"] == "ERP"
    (entry,) = audit(client, as_admin, "WEBHOOK_UPDATED")
    assert entry["changes"] == {
        "events": {"old": ["order.placed", "order.paid"], "new": ["*"]},
        "enabled": {"old": True, "new": False},
    }


@pytest.mark.parametrize(
    "body", [{"events": ["nope"]}, {"enabled": "yes"}, {"url": "gopher://x"}, {"secret": "x"}, {"events": []}]
)
def test_bad_patches_are_422(client: FlaskClient, as_admin: dict[str, str], body: dict[str, Any]) -> None:
    webhook_id = create(client, as_admin)["webhookId"]
    assert client.patch(f"/admin/webhooks/{webhook_id}", json=body, headers=as_admin).status_code == 422


def test_delete_removes_the_endpoint_and_records_it(client: FlaskClient, as_admin: dict[str, str]) -> None:
    webhook_id = create(client, as_admin)["webhookId"]
    assert client.delete(f"/admin/webhooks/{webhook_id}", headers=as_admin).status_code == 204
    assert client.get(f"/admin/webhooks/{webhook_id}", headers=as_admin).status_code == 404
    assert client.delete(f"/admin/webhooks/{webhook_id}", headers=as_admin).status_code == 404
    (entry,) = audit(client, as_admin, "WEBHOOK_DELETED")
    assert entry["resourceId"] == webhook_id and entry["changes"]["url"] == {"old": URL, "new": None}


def test_rotation_returns_a_new_secret_and_is_recorded_without_it(
    client: FlaskClient, as_admin: dict[str, str]
) -> None:
    created = create(client, as_admin)
    response = client.post(f"/admin/webhooks/{created['webhookId']}/rotate-secret", headers=as_admin)
    assert response.status_code == 200
    assert SECRET.match(response.json["secret"]) and response.json["secret"] != created["secret"]
    (entry,) = audit(client, as_admin, "WEBHOOK_SECRET_ROTATED")
    assert list(entry["changes"]) == ["previousSecretExpiresAt"]
    assert created["secret"] not in json.dumps(entry) and response.json["secret"] not in json.dumps(entry)


def test_a_test_event_is_queued_whatever_the_subscription(
    app: Any, client: FlaskClient, as_admin: dict[str, str]
) -> None:
    webhook_id = create(client, as_admin, events=["product.low_stock"])["webhookId"]
    response = client.post(f"/admin/webhooks/{webhook_id}/test", headers=as_admin)
    assert response.status_code == 202
    assert response.json["eventType"] == "webhook.test" and response.json["status"] == "PENDING"
    assert queued_deliveries(app) == [repr([response.json["deliveryId"]])]
    page = client.get(f"/admin/webhooks/{webhook_id}/deliveries", headers=as_admin).json
    assert page["totalItems"] == 1
    item = page["items"][0]
    assert set(item) == {
        "deliveryId",
        "eventId",
        "eventType",
        "status",
        "attempts",
        "lastStatusCode",
        "lastError",
        "nextAttemptAt",
        "createdAt",
        "deliveredAt",
    }
    assert item["eventId"].startswith("msg_") and item["attempts"] == 0


def test_deliveries_filter_by_status_and_paginate(
    client: FlaskClient, as_admin: dict[str, str], app_ctx: Any
) -> None:
    webhook_id = create(client, as_admin)["webhookId"]
    for _ in range(3):
        client.post(f"/admin/webhooks/{webhook_id}/test", headers=as_admin)
    first = db.session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.created_at)).first()
    first.status = "FAILED"
    db.session.commit()
    url = f"/admin/webhooks/{webhook_id}/deliveries"
    assert client.get(url, query_string={"status": "FAILED"}, headers=as_admin).json["totalItems"] == 1
    page = client.get(
        url, query_string={"status": "PENDING", "pageSize": 1, "page": 2}, headers=as_admin
    ).json
    assert page["totalItems"] == 2 and page["totalPages"] == 2 and len(page["items"]) == 1
    assert client.get(url, query_string={"status": "LOST"}, headers=as_admin).status_code == 422


def test_a_manual_retry_queues_one_more_attempt(
    app: Any, client: FlaskClient, as_admin: dict[str, str], app_ctx: Any
) -> None:
    webhook_id = create(client, as_admin)["webhookId"]
    delivery_id = client.post(f"/admin/webhooks/{webhook_id}/test", headers=as_admin).json["deliveryId"]
    delivery = db.session.get(WebhookDelivery, uuid.UUID(delivery_id))
    delivery.status, delivery.next_attempt_at = "FAILED", None
    db.session.commit()
    response = client.post(f"/admin/webhooks/{webhook_id}/deliveries/{delivery_id}/retry", headers=as_admin)
    assert response.status_code == 202 and response.json["status"] == "PENDING"
    assert queued_deliveries(app).count(repr([delivery_id])) == 2
    (entry,) = audit(client, as_admin, "WEBHOOK_DELIVERY_RETRIED")
    assert entry["changes"]["status"] == {"old": "FAILED", "new": "PENDING"}


def test_unknown_endpoints_and_deliveries_are_404(client: FlaskClient, as_admin: dict[str, str]) -> None:
    webhook_id = create(client, as_admin)["webhookId"]
    other = create(client, as_admin)["webhookId"]
    delivery_id = client.post(f"/admin/webhooks/{other}/test", headers=as_admin).json["deliveryId"]
    missing = uuid.uuid4()
    assert client.get(f"/admin/webhooks/{missing}", headers=as_admin).status_code == 404
    assert (
        client.patch(f"/admin/webhooks/{missing}", json={"enabled": True}, headers=as_admin).status_code
        == 404
    )
    assert client.post(f"/admin/webhooks/{missing}/rotate-secret", headers=as_admin).status_code == 404
    assert client.post(f"/admin/webhooks/{missing}/test", headers=as_admin).status_code == 404
    assert client.get(f"/admin/webhooks/{missing}/deliveries", headers=as_admin).status_code == 404
    # A delivery of another endpoint is not this endpoint's.
    retry = client.post(f"/admin/webhooks/{webhook_id}/deliveries/{delivery_id}/retry", headers=as_admin)
    assert retry.status_code == 404
    assert client.get("/admin/webhooks/not-a-uuid", headers=as_admin).status_code == 404


def test_customers_may_not_manage_webhooks(client: FlaskClient, customer: Any, token_for: Any) -> None:
    headers = token_for(customer)
    assert client.get("/admin/webhooks", headers=headers).status_code == 403
    response = client.post("/admin/webhooks", json={"url": URL, "events": ["*"]}, headers=headers)
    assert response.status_code == 403
    assert client.get("/admin/webhooks").status_code == 401


def test_the_openapi_document_describes_each_event_payload(client: FlaskClient) -> None:
    document = client.get("/openapi.json").json
    hooks = document["x-webhooks"]
    assert {"order.placed", "order.paid", "payment.refunded", "product.low_stock", "webhook.test"} <= set(
        hooks
    )
    ref = hooks["order.paid"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/WebhookOrderEvent"
    order_event = document["components"]["schemas"]["WebhookOrderEvent"]
    assert order_event["properties"]["data"]["allOf"] == [{"$ref": "#/components/schemas/Order"}]
    payment_event = document["components"]["schemas"]["WebhookPaymentEvent"]
    assert payment_event["properties"]["data"]["allOf"] == [{"$ref": "#/components/schemas/Payment"}]
    # Every type's payload follows WEBHOOK_EVENTS: return events carry the return (SPEC §5.4:
    # "for others the resource"), payment.disputed the payment.
    payload_of = {
        name: hook["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        for name, hook in hooks.items()
    }
    assert payload_of["return.requested"] == payload_of["return.received"] == "WebhookReturnEvent"
    assert payload_of["payment.disputed"] == "WebhookPaymentEvent"
    assert payload_of["product.low_stock"] == "WebhookResourceEvent"
    return_event = document["components"]["schemas"]["WebhookReturnEvent"]
    assert return_event["properties"]["data"]["allOf"] == [{"$ref": "#/components/schemas/Return"}]
