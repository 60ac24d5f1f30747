"""Queries over notifications, and the facts their e-mails are written from."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Session

from app.domain.fulfilment import Shipment, ShipmentItem
from app.domain.notifications import N_FAILED, N_PENDING, NO_RECIPIENT, Notification
from app.domain.orders import Order, OrderItem
from app.domain.payments import Payment
from app.domain.users import User
from app.repositories.orders import OrderRepository
from app.repositories.queries import page_of


@dataclass(frozen=True)
class OrderFacts:
    """What a notification about an order says: the order, its lines and its payment."""

    order: Order
    items: list[OrderItem]
    payment: Payment | None


INSERT_COLUMNS = (
    "id",
    "user_id",
    "order_id",
    "event_id",
    "event",
    "channel",
    "recipient",
    "subject",
    "message",
    "status",
    "attempts",
    "last_error",
    "created_at",
    "next_attempt_at",
    "account_token_id",
)
_INSERT_IF_ABSENT = text(
    f"INSERT INTO notifications ({', '.join(INSERT_COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c in INSERT_COLUMNS)}) "
    "ON CONFLICT (event_id, channel) DO NOTHING RETURNING id"
).columns(id=UUID(as_uuid=True))


# The name appears in the greeting of every template ("Hello <name>,"); a name of 3 characters or
# more is replaced wherever it appears (a shorter one only in the greeting, so that words survive).
_SCRUB_USER = text(
    "UPDATE notifications SET recipient = NULL, "
    "message = CASE WHEN length(:name) >= 3 "
    "THEN replace(replace(message, 'Hello ' || :name || ',', 'Hello there,'), :name, :erased) "
    "ELSE replace(message, 'Hello ' || :name || ',', 'Hello there,') END, "
    "last_error = CASE WHEN status = 'SENT' THEN last_error ELSE :no_recipient END, "
    "status = CASE WHEN status = 'SENT' THEN status ELSE 'FAILED' END, "
    "next_attempt_at = NULL "
    "WHERE user_id = :user_id"
).bindparams(no_recipient=NO_RECIPIENT)


class NotificationRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def insert_if_absent(self, values: dict[str, Any]) -> uuid.UUID | None:
        """``INSERT … ON CONFLICT (event_id, channel) DO NOTHING``: the new id, or None if it existed.

        ``values`` holds exactly ``INSERT_COLUMNS``. As text SQL, because SQLAlchemy compiles a
        PostgreSQL ``ON CONFLICT`` construct again on every execution (it cannot cache it).
        """
        return self.session.scalar(_INSERT_IF_ABSENT, values)

    def find_by_event(self, event_id: int, channel: str) -> Notification | None:
        stmt = select(Notification).where(Notification.event_id == event_id, Notification.channel == channel)
        return self.session.scalars(stmt).first()

    def get(self, notification_id: uuid.UUID) -> Notification | None:
        return self.session.get(Notification, notification_id)

    def lock(self, notification_id: uuid.UUID, *, skip_locked: bool = False) -> Notification | None:
        """``SELECT … FOR UPDATE`` (``SKIP LOCKED``: None while another worker is sending it)."""
        stmt = (
            select(Notification)
            .where(Notification.id == notification_id)
            .with_for_update(skip_locked=skip_locked)
            .execution_options(populate_existing=True)
        )
        return self.session.scalars(stmt).first()

    def page_for_user(self, user_id: uuid.UUID, page: int, page_size: int) -> tuple[list[Notification], int]:
        stmt = (
            select(Notification)
            .where(Notification.user_id == user_id)
            .order_by(Notification.created_at.desc(), Notification.id.desc())
        )
        return page_of(self.session, stmt, page, page_size)

    def page(
        self, *, status: str | None, event: str | None, user_id: uuid.UUID | None, page: int, page_size: int
    ) -> tuple[list[Notification], int]:
        """Every notification matching the filters, newest first (admin list)."""
        conditions = []
        if status is not None:
            conditions.append(Notification.status == status)
        if event is not None:
            conditions.append(Notification.event == event)
        if user_id is not None:
            conditions.append(Notification.user_id == user_id)
        stmt = (
            select(Notification)
            .where(*conditions)
            .order_by(Notification.created_at.desc(), Notification.id.desc())
        )
        return page_of(self.session, stmt, page, page_size)

    def lock_due_for_retry(
        self, *, created_after: datetime, overdue_before: datetime, limit: int
    ) -> list[Notification]:
        """FAILED ones, and PENDING ones whose queued delivery is long overdue (lost by the broker).

        Only notifications created after ``created_after`` and with a recipient; rows being
        delivered right now are skipped (``SKIP LOCKED``).
        """
        stmt = (
            select(Notification)
            .where(
                Notification.created_at > created_after,
                Notification.recipient.is_not(None),
                Notification.permanent_failure.is_(False),
                or_(
                    Notification.status == N_FAILED,
                    and_(Notification.status == N_PENDING, Notification.next_attempt_at < overdue_before),
                ),
            )
            .order_by(Notification.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list(self.session.scalars(stmt))

    def scrub_user(self, user_id: uuid.UUID, name: str, erased_name: str) -> int:
        """Erasure: drop the recipient address and the name from every notification of the user,
        and fail the ones not yet sent (``no recipient``: nothing can send them any more). One
        statement; a delivery in progress holds its row, so this waits for it and then sees SENT."""
        result = self.session.execute(_SCRUB_USER, {"user_id": user_id, "name": name, "erased": erased_name})
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    # ---- the facts an e-mail is written from --------------------------------------------------

    def user(self, user_id: uuid.UUID) -> User | None:
        return self.session.get(User, user_id)

    def shipment_lines(self, shipment_id: uuid.UUID) -> list[tuple[str, int]]:
        """(product name, units) of one shipment, by name."""
        stmt = (
            select(OrderItem.product_name, ShipmentItem.quantity)
            .join(Shipment, Shipment.id == ShipmentItem.shipment_id)
            .join(
                OrderItem,
                (OrderItem.order_id == Shipment.order_id) & (OrderItem.product_id == ShipmentItem.product_id),
            )
            .where(ShipmentItem.shipment_id == shipment_id)
            .order_by(OrderItem.product_name)
        )
        return [(name, int(quantity)) for name, quantity in self.session.execute(stmt)]

    def order_facts(self, order_id: uuid.UUID) -> OrderFacts | None:
        """The order with its items (by name) and payment, in one joined statement."""
        order = OrderRepository(self.session).get(order_id)
        if order is None:
            return None
        items = sorted(order.items, key=lambda item: item.product_name)
        return OrderFacts(order=order, items=items, payment=order.payment)
