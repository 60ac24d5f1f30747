"""Queries over webhook endpoints, messages and deliveries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Session

from app.domain.users import ROLE_ADMIN, User
from app.domain.webhooks import (
    PENDING,
    TEST_EVENT,
    ClaimedDelivery,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookMessage,
)
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

# Bookkeeping of an attempt (the claim's lease, a success) commits without waiting for its WAL
# flush: visible to every other session at once, as any commit; only a crash of Postgres itself
# within a fraction of a second could lose it, and then the delivery is simply sent again (SPEC:
# at least once; ``webhook-id`` lets receivers drop the repeat). Saves an fsync per statement.
# Anything that raises an event (a failure that disables the endpoint) commits normally.
_NO_FLUSH_WAIT = "(SELECT set_config('synchronous_commit', 'off', true)) AS no_flush_wait"
# One statement (autocommit): due, not leased, the endpoint enabled (or a test event), fewer than
# the bound leased → leased, attempts + 1, and everything the attempt needs returned. Its count
# sees the claims committed before it began; two racing claims can both pass it, so the caller
# counts again once committed (``in_flight``) and steps back if over: see ``services.webhooks``.
# No row: the delivery is not to be sent now, or the endpoint is full (the caller finds out which).
_CLAIM = text(
    "UPDATE webhook_deliveries AS d SET lease_until = :lease_until, attempts = d.attempts + 1 "
    f"FROM webhook_endpoints AS e, webhook_messages AS m, {_NO_FLUSH_WAIT} "
    "WHERE d.id = :id AND e.id = d.endpoint_id AND m.id = d.message_id "
    "AND d.status = 'PENDING' "
    "AND (d.lease_until IS NULL OR d.lease_until <= :now) "
    "AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= :due_by) "
    "AND (e.enabled OR m.event_type = :test_event) "
    "AND (SELECT count(*) FROM webhook_deliveries AS busy WHERE busy.endpoint_id = d.endpoint_id "
    "AND busy.status = 'PENDING' AND busy.lease_until > :now AND busy.next_attempt_at <= :horizon) "
    "< :bound "
    "RETURNING d.id AS delivery_id, d.attempts AS attempt, e.id AS endpoint_id, e.url, e.secret, "
    "e.previous_secret, e.previous_secret_expires_at, m.id AS message_id, m.event_type, m.data_kind, "
    "m.resource_id, m.data, m.body, m.occurred_at"
)
# Leased deliveries of an endpoint. A leased delivery was due when claimed (next_attempt_at at most
# a second after its claim, the claim before its lease ends), so ``next_attempt_at <= horizon`` (the
# latest a lease taken now could end) loses none of them and lets the partial index on PENDING
# deliveries by next_attempt_at skip the retries scheduled for later.
_IN_FLIGHT = text(
    "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = :endpoint_id AND status = 'PENDING' "
    "AND lease_until > :now AND next_attempt_at <= :horizon"
)
_RELEASE = text(
    "UPDATE webhook_deliveries SET lease_until = NULL, attempts = attempts - 1 "
    "WHERE id = :id AND lease_until = :lease_until"
)
_STORE_BODY = text("UPDATE webhook_messages SET body = coalesce(body, :body) WHERE id = :id RETURNING body")
# A success in one statement: the delivery SUCCEEDED and, only if it was not 0 already, the
# endpoint's failure count reset (so the endpoint row is neither locked nor written otherwise).
_RECORD_SUCCESS = text(
    "WITH delivered AS ("
    "UPDATE webhook_deliveries SET status = 'SUCCEEDED', delivered_at = :now, next_attempt_at = NULL, "
    "lease_until = NULL, last_status_code = :status_code, last_error = NULL WHERE id = :id "
    "RETURNING endpoint_id), "
    "reset AS (UPDATE webhook_endpoints SET consecutive_failures = 0 "
    "WHERE id IN (SELECT endpoint_id FROM delivered) AND consecutive_failures <> 0) "
    f"SELECT count(*) FROM delivered, {_NO_FLUSH_WAIT}"
)


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
        """Fix the body at its first rendering; a concurrent first rendering keeps the one stored first
        (the second UPDATE waits for the first's row lock, then sees its body)."""
        stored = self.session.scalar(_STORE_BODY, {"id": message_id, "body": body})
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

    def claim(
        self,
        delivery_id: uuid.UUID,
        *,
        now: datetime,
        due_by: datetime,
        lease_until: datetime,
        horizon: datetime,
        bound: int,
    ) -> ClaimedDelivery | None:
        """Lease the delivery for one attempt if it may go now (one statement); None if not."""
        row = self.session.execute(
            _CLAIM,
            {
                "id": delivery_id,
                "now": now,
                "due_by": due_by,
                "lease_until": lease_until,
                "horizon": horizon,
                "test_event": TEST_EVENT,
                "bound": bound,
            },
        ).first()
        return ClaimedDelivery(**row._asdict()) if row is not None else None

    def in_flight(self, endpoint_id: uuid.UUID, now: datetime, horizon: datetime) -> int:
        """Deliveries of the endpoint being sent right now (their lease still runs)."""
        params = {"endpoint_id": endpoint_id, "now": now, "horizon": horizon}
        return int(self.session.scalar(_IN_FLIGHT, params) or 0)

    def release(self, delivery_id: uuid.UUID, lease_until: datetime) -> None:
        """Give back a lease taken but not used (the attempt does not count)."""
        self.session.execute(_RELEASE, {"id": delivery_id, "lease_until": lease_until})

    def record_success(self, delivery_id: uuid.UUID, status_code: int, now: datetime) -> bool:
        """SUCCEEDED (and the endpoint's failure count back to 0); False if the delivery is gone."""
        found = self.session.scalar(
            _RECORD_SUCCESS, {"id": delivery_id, "status_code": status_code, "now": now}
        )
        return bool(found)

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
