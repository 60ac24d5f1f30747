"""Webhook rules without a database: Standard Webhooks signatures (checked by the library), the
retry schedule, subscriptions, secrets and the settings."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from app.config import ConfigError, Settings
from app.domain import events
from app.domain.webhooks import (
    EVENT_TYPES,
    WEBHOOK_EVENTS,
    WebhookEndpoint,
    event_data,
    new_secret,
    next_retry_delay,
    sign,
    signature_header,
    subscribes,
    unknown_event_types,
)

BODY = '{"type":"order.paid","timestamp":"2026-12-02T06:00:00Z","data":{"orderId":"o-1"}}'


def headers(msg_id: str, timestamp: int, signature: str) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


def test_our_signature_is_the_one_the_library_computes_and_verifies() -> None:
    secret = new_secret()
    now = datetime.now(UTC).replace(microsecond=0)
    ours = sign("msg_1", int(now.timestamp()), BODY, secret)
    assert ours == Webhook(secret).sign("msg_1", now, BODY)
    assert Webhook(secret).verify(BODY, headers("msg_1", int(now.timestamp()), ours))["data"] == {
        "orderId": "o-1"
    }


def test_a_changed_body_id_or_timestamp_fails_verification() -> None:
    secret = new_secret()
    stamp = int(datetime.now(UTC).timestamp())
    signature = sign("msg_1", stamp, BODY, secret)
    for body, msg_id, ts in (
        (BODY + " ", "msg_1", stamp),
        (BODY, "msg_2", stamp),
        (BODY, "msg_1", stamp - 1),
    ):
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(body, headers(msg_id, ts, signature))


def test_two_secrets_give_two_space_separated_signatures_each_verifiable() -> None:
    old, new = new_secret(), new_secret()
    stamp = int(datetime.now(UTC).timestamp())
    header = signature_header("msg_9", stamp, BODY, [new, old])
    assert len(header.split(" ")) == 2 and all(part.startswith("v1,") for part in header.split(" "))
    for secret in (old, new):
        Webhook(secret).verify(BODY, headers("msg_9", stamp, header))
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers("msg_9", stamp, header))


def test_a_secret_is_whsec_and_base64_of_at_least_24_random_bytes() -> None:
    secrets = {new_secret() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert re.fullmatch(r"whsec_[A-Za-z0-9+/]+=*", secret)
        assert len(base64.b64decode(secret.removeprefix("whsec_"))) >= 24


def test_rotation_keeps_the_previous_secret_signing_for_24_hours() -> None:
    now = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
    endpoint = WebhookEndpoint(secret=new_secret())
    first = endpoint.secret
    second = endpoint.rotate_secret(now)
    assert endpoint.signing_secrets(now) == [second, first]
    assert endpoint.signing_secrets(now + timedelta(hours=23, minutes=59)) == [second, first]
    assert endpoint.signing_secrets(now + timedelta(hours=24)) == [second]


def test_the_retry_schedule_gives_one_retry_per_delay_then_none() -> None:
    schedule = (5, 300, 1800, 7200, 18000, 36000, 36000)
    assert [next_retry_delay(schedule, used) for used in range(8)] == [*schedule, None]
    assert next_retry_delay((), 0) is None


def test_the_default_schedule_and_its_parsing() -> None:
    base = {"SECRET_KEY": "k" * 40}
    assert Settings.from_env(base).WEBHOOK_RETRY_SCHEDULE == (5, 300, 1800, 7200, 18000, 36000, 36000)
    assert Settings.from_env({**base, "WEBHOOK_RETRY_SCHEDULE": "1, 2,3"}).WEBHOOK_RETRY_SCHEDULE == (1, 2, 3)
    assert Settings.from_env({**base, "WEBHOOK_RETRY_SCHEDULE": "none"}).WEBHOOK_RETRY_SCHEDULE == ()
    for bad in ("1,x", "-1", "1,,2"):
        with pytest.raises(ConfigError):
            Settings.from_env({**base, "WEBHOOK_RETRY_SCHEDULE": bad})


def test_private_urls_are_allowed_in_development_and_not_in_production() -> None:
    assert Settings.from_env({"SECRET_KEY": "k" * 40}).WEBHOOK_ALLOW_PRIVATE_URLS is True
    production = {
        "APP_ENV": "production",
        "SECRET_KEY": "k" * 40,
        "METRICS_TOKEN": "t",
        "STRIPE_WEBHOOK_SECRET": "whsec_live",
    }
    assert Settings.from_env(production).WEBHOOK_ALLOW_PRIVATE_URLS is False
    assert (
        Settings.from_env({**production, "WEBHOOK_ALLOW_PRIVATE_URLS": "true"}).WEBHOOK_ALLOW_PRIVATE_URLS
        is True
    )


def test_subscriptions_and_unknown_types() -> None:
    assert subscribes(["*"], "product.low_stock")
    assert subscribes(["order.paid"], "order.paid") and not subscribes(["order.paid"], "order.placed")
    assert unknown_event_types(["*", "order.paid", "order.exploded"]) == ["order.exploded"]


def test_every_mapped_event_has_a_type_of_the_spec() -> None:
    assert {t.name for t in WEBHOOK_EVENTS.values()} <= set(EVENT_TYPES)
    assert WEBHOOK_EVENTS[events.OrderShipped].name == "order.shipped"


def test_event_data_is_camel_case() -> None:
    event = events.OrderCancelled(order_id="o-1", user_id="u-1", reason="PAYMENT_TIMEOUT")
    assert event_data(event) == {"orderId": "o-1", "userId": "u-1", "reason": "PAYMENT_TIMEOUT"}
