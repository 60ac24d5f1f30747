"""Queries over webhook endpoints, messages and deliveries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Session

from app.domain.users import ROLE_ADMIN, User
from app.domain.webhooks import PENDING, WebhookDelivery, WebhookEndpoint, WebhookMessage
from app.repositories.queries import page_of

_INSERT_MESSAGE = text(
    "INSERT INTO webhook_messages (id, outbox_id, event_type, data_kind, resource_id, data, occurred_at) "
    "VALUES (:id, :outbox_id, :event_type, :data_kind, :resource_id, CAST(:data AS JSONB), :occurred_at) "
    "ON CONFLICT (outbox_id) DO NOTHING"
)
_MESSAGE_OF_OUTBOX = text("SELECT id FROM webhook_messages WHERE outbox_id = :outbox_id").columns(
    id=UUID(as_uuid=True)
)
_INSERT_DELIVERY = text(
    "INSERT INTO webhook_deliveries "
    "(id, endpoint_id, message_id, status, attempts, retries_used, next_attempt_at, queued_at, created_at) "
    "VALUES (:id, :endpoint_id, :message_id, 'PENDING', 0, 0, :now, :now, :now) "
    "ON CONFLICT (endpoint_id, message_id) DO NOTHING RETURNING id"
).columns(id=UUID(as_uuid=True))


class WebhookRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    # ---- endpoints ------------------------------------------------------------------------------

    def add(self, endpoint: WebhookEndpoint) -> None:
        self.session.add(endpoint)
        self.session.flush()

    def get(self, endpoint_id: uuid.UUID) -> WebhookEndpoint | None:
        return self.session.get(WebhookEndpoint, endpoint_id)

    def lock(self, endpoint_id: uuid.UUID) -> WebhookEndpoint | None:
        stmt = select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id).with_for_update()
        return self.session.scalars(stmt.execution_options(populate_existing=True)).first()

    def delete(self, endpoint: WebhookEndpoint) -> None:
        """The endpoint and (ON DELETE CASCADE) its deliveries."""
        self.session.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint.id))

    def page(self, page: int, page_size: int) -> tuple[list[WebhookEndpoint], int]:
        stmt = select(WebhookEndpoint).order_by(WebhookEndpoint.created_at.desc(), WebhookEndpoint.id.desc())
        return page_of(self.session, stmt, page, page_size)

    def enabled(self) -> list[WebhookEndpoint]:
        return list(self.session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.enabled.is_(True))))

    def in_flight(self, endpoint_id: uuid.UUID, now: datetime) -> int:
        """Deliveries of the endpoint being sent right now (their lease still runs)."""
        stmt = select(func.count()).where(
            WebhookDelivery.endpoint_id == endpoint_id,
            WebhookDelivery.status == PENDING,
            WebhookDelivery.lease_until > now,
        )
        return int(self.session.scalar(stmt) or 0)

    # ---- messages -------------------------------------------------------------------------------

    def message_for_outbox(self, values: dict[str, Any]) -> uuid.UUID:
        """The message of this outbox event: inserted now, or the one a first dispatch inserted."""
        self.session.execute(_INSERT_MESSAGE, values)
        found = self.session.scalar(_MESSAGE_OF_OUTBOX, {"outbox_id": values["outbox_id"]})
        assert found is not None
        return found  # type: ignore[no-any-return]

    def add_message(self, message: WebhookMessage) -> None:
        self.session.add(message)
        self.session.flush()

    def get_message(self, message_id: uuid.UUID) -> WebhookMessage | None:
        return self.session.get(WebhookMessage, message_id)

    def set_body_if_absent(self, message_id: uuid.UUID, body: str) -> str:
        """Fix the body at its first rendering; a concurrent first rendering keeps the one stored first."""
        self.session.execute(
            update(WebhookMessage)
            .where(WebhookMessage.id == message_id, WebhookMessage.body.is_(None))
            .values(body=body)
        )
        stored = self.session.scalar(select(WebhookMessage.body).where(WebhookMessage.id == message_id))
        return stored or body

    # ---- deliveries -----------------------------------------------------------------------------

    def add_deliveries(
        self, message_id: uuid.UUID, endpoint_ids: Sequence[uuid.UUID], now: datetime
    ) -> list[uuid.UUID]:
        """One delivery per endpoint, unless it exists (ON CONFLICT DO NOTHING); the new ids."""
        created = []
        for endpoint_id in endpoint_ids:
            values = {"id": uuid.uuid4(), "endpoint_id": endpoint_id, "message_id": message_id, "now": now}
            new = self.session.scalar(_INSERT_DELIVERY, values)
            if new is not None:
                created.append(new)
        return created

    def add_delivery(self, delivery: WebhookDelivery) -> None:
        self.session.add(delivery)
        self.session.flush()

    def get_delivery(self, delivery_id: uuid.UUID) -> WebhookDelivery | None:
        return self.session.get(WebhookDelivery, delivery_id)

    def lock_delivery(self, delivery_id: uuid.UUID, *, skip_locked: bool = False) -> WebhookDelivery | None:
        stmt = (
            select(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id)
            .with_for_update(skip_locked=skip_locked)
            .execution_options(populate_existing=True)
        )
        return self.session.scalars(stmt).first()

    def deliveries_page(
        self, endpoint_id: uuid.UUID, status: str | None, page: int, page_size: int
    ) -> tuple[list[tuple[WebhookDelivery, WebhookMessage]], int]:
        conditions = [WebhookDelivery.endpoint_id == endpoint_id]
        if status is not None:
            conditions.append(WebhookDelivery.status == status)
        total = self.session.scalar(select(func.count()).select_from(WebhookDelivery).where(*conditions)) or 0
        rows = self.session.execute(
            select(WebhookDelivery, WebhookMessage)
            .join(WebhookMessage, WebhookMessage.id == WebhookDelivery.message_id)
            .where(*conditions)
            .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
            .limit(page_size)
            .offset((page - 1) * page_size)
        )
        return [(d, m) for d, m in rows.tuples()], int(total)

    def lock_due(self, now: datetime, requeue_before: datetime, limit: int) -> list[WebhookDelivery]:
        """PENDING deliveries due now, not being sent, and not queued recently (SKIP LOCKED)."""
        stmt = (
            select(WebhookDelivery)
            .where(
                WebhookDelivery.status == PENDING,
                WebhookDelivery.next_attempt_at <= now,
                or_(WebhookDelivery.lease_until.is_(None), WebhookDelivery.lease_until < now),
                or_(WebhookDelivery.queued_at.is_(None), WebhookDelivery.queued_at < requeue_before),
            )
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list(self.session.scalars(stmt))

    def admin_emails(self) -> list[str]:
        """Where the admins are told of a disabled endpoint (live admin accounts)."""
        stmt = select(User.email).where(
            User.role == ROLE_ADMIN, User.deleted_at.is_(None), User.email.is_not(None)
        )
        return [email for email in self.session.scalars(stmt) if email]
