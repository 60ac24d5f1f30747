"""Outbound webhooks (SPEC §5.4): endpoints, the messages sent to them, and each delivery's rules.

A domain event that a webhook type maps to (``WEBHOOK_EVENTS``, the one table) becomes one
``WebhookMessage`` (its ``webhook-id``, the same on every attempt) and one ``WebhookDelivery`` per
enabled endpoint subscribed to its type. Signatures follow Standard Webhooks: ``v1,<base64
HMAC-SHA256("{id}.{timestamp}.{body}")>`` keyed with the secret's decoded bytes, one per live secret.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import secrets as random_secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.domain import events
from app.domain.base import Base, new_id, utcnow

# ---- event types ----------------------------------------------------------------------------------

ALL_EVENTS = "*"
TEST_EVENT = "webhook.test"

# What ``data`` holds (SPEC §5.4: for order events the order, for others the resource): the order
# as an admin's GET /orders/{id} renders it, the payment as GET /orders/{id}/payment renders it,
# the return as GET /orders/{id}/returns/{returnId} renders it, or the event's own fields (camelCase).
ORDER = "order"
PAYMENT = "payment"
RETURN = "return"
EVENT = "event"


@dataclass(frozen=True)
class WebhookType:
    name: str  # the type consumers see: "order.placed"
    data: str  # ORDER, PAYMENT, RETURN or EVENT
    id_field: str = "order_id"  # the event field naming the resource (ORDER, PAYMENT, RETURN)


# The one table from domain events to webhook types: an event a feature adds is one line.
WEBHOOK_EVENTS: dict[type[events.Event], WebhookType] = {
    events.OrderPlaced: WebhookType("order.placed", ORDER),
    events.PaymentCompleted: WebhookType("order.paid", ORDER),
    events.OrderShipped: WebhookType("order.shipped", ORDER),
    events.OrderDelivered: WebhookType("order.delivered", ORDER),
    events.OrderCancelled: WebhookType("order.cancelled", ORDER),
    events.PaymentFailed: WebhookType("payment.failed", PAYMENT),
    events.PaymentRefunded: WebhookType("payment.refunded", PAYMENT),
    # A partial refund is a refund too: the payment then shows refundedAmount and refunds[].
    events.PaymentPartiallyRefunded: WebhookType("payment.refunded", PAYMENT),
    events.PaymentDisputed: WebhookType("payment.disputed", PAYMENT),
    events.ReturnRequested: WebhookType("return.requested", RETURN, "return_id"),
    events.ReturnReceived: WebhookType("return.received", RETURN, "return_id"),
    events.ProductLowStock: WebhookType("product.low_stock", EVENT),
}

# Every type an endpoint may subscribe to (SPEC §5.4), including those whose events other
# features raise; ``events: ["*"]`` means all of them.
EVENT_TYPES: tuple[str, ...] = (
    "order.placed",
    "order.paid",
    "order.shipped",
    "order.delivered",
    "order.cancelled",
    "payment.failed",
    "payment.refunded",
    "payment.disputed",
    "return.requested",
    "return.received",
    "product.low_stock",
)


def subscribes(endpoint_events: Sequence[str], event_type: str) -> bool:
    return ALL_EVENTS in endpoint_events or event_type in endpoint_events


def unknown_event_types(requested: Sequence[str]) -> list[str]:
    return [name for name in requested if name != ALL_EVENTS and name not in EVENT_TYPES]


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def event_data(event: events.Event) -> dict[str, Any]:
    """The event's own fields under camelCase names (``data`` of EVENT types)."""
    return {camel(key): value for key, value in event.to_payload().items()}


def message_body(event_type: str, occurred_at: datetime, data: Any) -> str:
    """The body every delivery of a message sends: ``{"type", "timestamp" (RFC 3339), "data"}``."""
    return json.dumps(
        {"type": event_type, "timestamp": occurred_at.isoformat().replace("+00:00", "Z"), "data": data},
        separators=(",", ":"),
    )


# ---- secrets and signatures -----------------------------------------------------------------------

SECRET_PREFIX = "whsec_"  # noqa: S105 (the Standard Webhooks prefix)
SECRET_BYTES = 32
ROTATION_OVERLAP = timedelta(hours=24)


def new_secret() -> str:
    """``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(random_secrets.token_bytes(SECRET_BYTES)).decode()


@functools.lru_cache(maxsize=1024)
def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret (decoded once per process: a worker signs with few secrets)."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def live_secrets(
    secret: str, previous: str | None, previous_expires_at: datetime | None, now: datetime
) -> list[str]:
    """The secrets that sign now: the current one, and the previous one during its 24 h of overlap."""
    live = [secret]
    if previous and previous_expires_at and now < previous_expires_at:
        live.append(previous)
    return live


def webhook_id_of(message_id: uuid.UUID) -> str:
    """The ``webhook-id`` header of a message (the same on every delivery and attempt)."""
    return f"msg_{message_id.hex}"


def sign(message_id: str, timestamp: int, body: str, secret: str) -> str:
    """One Standard Webhooks signature: ``v1,<base64 HMAC-SHA256("{id}.{timestamp}.{body}")>``."""
    to_sign = f"{message_id}.{timestamp}.{body}".encode()
    digest = hmac.new(secret_key(secret), to_sign, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(message_id: str, timestamp: int, body: str, secrets: Sequence[str]) -> str:
    """The ``webhook-signature`` value: one signature per live secret, space-separated."""
    return " ".join(sign(message_id, timestamp, body, secret) for secret in secrets)


# ---- retries ----------------------------------------------------------------------------------------


def next_retry_delay(schedule: Sequence[int], retries_used: int) -> int | None:
    """Seconds until the next attempt after a failed one, or None when the schedule is spent.

    The first attempt is followed by one retry after each delay of the schedule, in order.
    """
    return schedule[retries_used] if retries_used < len(schedule) else None


def is_success(status_code: int | None) -> bool:
    return status_code is not None and 200 <= status_code < 300


GONE = 410

# ---- entities ---------------------------------------------------------------------------------------

PENDING = "PENDING"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
DELIVERY_STATUSES = (PENDING, SUCCEEDED, FAILED)
KEEP_RESPONSE_BYTES = 1024


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=new_id)
    url: Mapped[str] = mapped_column(Text)
    event_types: Mapped[list[str]] = mapped_column("events", JSONB)
    description: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    secret: Mapped[str] = mapped_column(Text)
    previous_secret: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    def signing_secrets(self, now: datetime) -> list[str]:
        """The current secret, and the previous one during its 24 h of overlap."""
        return live_secrets(self.secret, self.previous_secret, self.previous_secret_expires_at, now)

    def rotate_secret(self, now: datetime) -> str:
        self.previous_secret = self.secret
        self.previous_secret_expires_at = now + ROTATION_OVERLAP
        self.secret = new_secret()
        self.updated_at = now
        return self.secret

    def disable(self, reason: str, now: datetime) -> events.WebhookEndpointDisabled | None:
        """Switch the endpoint off; the event that tells the admins, or None if it was off already."""
        if not self.enabled:
            return None
        self.enabled = False
        self.disabled_reason = reason
        self.updated_at = now
        return events.WebhookEndpointDisabled(webhook_id=str(self.id), url=self.url, reason=reason)


class WebhookMessage(Base):
    """One event as webhooks send it: its id is the ``webhook-id`` of every delivery and attempt."""

    __tablename__ = "webhook_messages"
    __table_args__ = (UniqueConstraint("outbox_id", name="uq_webhook_messages_outbox_id"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=new_id)
    outbox_id: Mapped[int | None] = mapped_column(BigInteger)  # None for test events
    event_type: Mapped[str] = mapped_column(String(64))
    data_kind: Mapped[str] = mapped_column(String(16))
    resource_id: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict[str, Any] | None] = mapped_column(JSONB)  # EVENT kind: known at once
    body: Mapped[str | None] = mapped_column(Text)  # rendered at the first attempt, then fixed
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    @property
    def webhook_id(self) -> str:
        return webhook_id_of(self.id)


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint("status IN ('PENDING', 'SUCCEEDED', 'FAILED')", name="status"),
        # Fan-out inserts ON CONFLICT DO NOTHING on this: a redelivered event adds no delivery.
        UniqueConstraint("endpoint_id", "message_id", name="uq_webhook_deliveries_endpoint_message"),
        Index("ix_webhook_deliveries_endpoint_id_created_at", "endpoint_id", "created_at"),
        Index("ix_webhook_deliveries_due", "next_attempt_at", postgresql_where="status = 'PENDING'"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=new_id)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    message_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("webhook_messages.id", ondelete="CASCADE")
    )
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    retries_used: Mapped[int] = mapped_column(Integer, default=0)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class ClaimedDelivery:
    """A delivery claimed for one attempt, with what sending it takes (read by the claim itself)."""

    delivery_id: uuid.UUID
    attempt: int  # this attempt's number (1 for the first)
    endpoint_id: uuid.UUID
    url: str
    secret: str
    previous_secret: str | None
    previous_secret_expires_at: datetime | None
    message_id: uuid.UUID
    event_type: str
    data_kind: str
    resource_id: str | None
    data: Any  # EVENT kind: the event's fields
    body: str | None  # once rendered (then fixed)
    occurred_at: datetime

    @property
    def webhook_id(self) -> str:
        return webhook_id_of(self.message_id)

    def signing_secrets(self, now: datetime) -> list[str]:
        return live_secrets(self.secret, self.previous_secret, self.previous_secret_expires_at, now)
