"""Returns: delivered units coming back, and the money for them (SPEC §5.2).

The rules:

- Only delivered units may be returned, within ``RETURN_WINDOW_DAYS`` of their shipment's
  delivery (0 accepts no returns). For each product, what may be returned is the units delivered
  within the window, and never more than every delivered unit minus the units of the order's
  returns that are not REJECTED. Above that → ``ReturnTooLarge`` (409) listing
  ``{productId, requested, returnable}``; a product that is not in the order → 422.
- Each line is refunded at the price paid (the order line's unit price).
- REQUESTED → RECEIVED (the units go back into stock through the ledger, reason ``RETURN``,
  unless ``restock`` is false; ``quantityReturned`` counts them) → REFUNDED when the refund of
  ``refundAmount`` succeeds. REQUESTED → REJECTED. The current status again changes nothing; any
  other transition is an ``InvalidTransition``.
- Each step records its event on the order (``ReturnRequested``, ``ReturnReceived``,
  ``ReturnRefunded``), which the unit of work writes to the outbox.

The caller holds the order's row lock, so concurrent requests are serialised and never return
more units than were delivered.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import Boolean, CheckConstraint, DateTime, ForeignKey, Index, Integer, Numeric, String, Text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.domain.actors import Actor
from app.domain.base import Base, new_id
from app.domain.catalogue import REASON_RETURN, Product, StockMovement, change_stock
from app.domain.errors import InvalidTransition, ReturnTooLarge, ValidationFailed
from app.domain.events import ReturnReceived, ReturnRefunded, ReturnRequested
from app.domain.orders import Order


class ReturnStatus(StrEnum):
    REQUESTED = "REQUESTED"
    RECEIVED = "RECEIVED"
    REFUNDED = "REFUNDED"
    REJECTED = "REJECTED"


class ReturnReason(StrEnum):
    DAMAGED = "DAMAGED"
    WRONG_ITEM = "WRONG_ITEM"
    NOT_AS_DESCRIBED = "NOT_AS_DESCRIBED"
    NO_LONGER_NEEDED = "NO_LONGER_NEEDED"
    OTHER = "OTHER"


RETURN_STATUSES = tuple(ReturnStatus)
RETURN_REASONS = tuple(ReturnReason)
# What an admin may decide (PUT): the rest happens by itself.
RETURN_DECISIONS = (ReturnStatus.RECEIVED, ReturnStatus.REJECTED)


class Return(Base):
    __tablename__ = "returns"
    __table_args__ = (
        CheckConstraint("status IN ('REQUESTED', 'RECEIVED', 'REFUNDED', 'REJECTED')", name="status"),
        Index("ix_returns_order_id_created_at", "order_id", "created_at"),
        Index("ix_returns_refund_id", "refund_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=new_id)
    order_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("orders.id", ondelete="CASCADE")
    )
    status: Mapped[str] = mapped_column(String(16), default=ReturnStatus.REQUESTED)
    reason: Mapped[str] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)
    refund_amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    # None until RECEIVED: whether the units went back into stock.
    restocked: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    refunded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The refund started for this return (the payments' refund path), once there is one.
    refund_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))

    items: Mapped[list[ReturnItem]] = relationship(
        "ReturnItem",
        order_by="ReturnItem.product_id",
        cascade="all, delete-orphan",
        passive_deletes=True,
        lazy="selectin",
    )

    @property
    def counts_against_delivered(self) -> bool:
        """Every return but a REJECTED one holds its units (they cannot be asked for twice)."""
        return self.status != ReturnStatus.REJECTED

    def receive(
        self,
        order: Order,
        products: Mapping[uuid.UUID, Product],
        *,
        restock: bool,
        actor: Actor,
        now: datetime,
    ) -> list[StockMovement]:
        """REQUESTED → RECEIVED: the units back into stock (ledger reason RETURN) unless ``restock``
        is false, counted in the order lines' ``quantityReturned``. ``products`` are locked by the
        caller. RECEIVED again: nothing changes (no movements)."""
        if self.status == ReturnStatus.RECEIVED:
            return []
        if self.status != ReturnStatus.REQUESTED:
            raise InvalidTransition(f"A return in status {self.status} cannot be RECEIVED")
        movements = []
        if restock:
            movements = [
                change_stock(
                    products[item.product_id],
                    item.quantity,
                    REASON_RETURN,
                    note=f"return {self.id}",
                    order_id=order.id,
                    actor_id=actor.user_id,
                )
                for item in self.items
            ]
        returned = {item.product_id: item.quantity for item in self.items}
        for line in order.items:
            line.quantity_returned = (line.quantity_returned or 0) + returned.get(line.product_id, 0)
        order.version += 1  # the order's body (quantityReturned) changed
        order.updated_at = now
        self.status = ReturnStatus.RECEIVED
        self.restocked = restock
        self.received_at = now
        order.events.append(
            ReturnReceived(
                order_id=str(order.id),
                user_id=str(order.user_id),
                return_id=str(self.id),
                refund_amount=str(self.refund_amount),
                restocked=restock,
            )
        )
        return movements

    def reject(self) -> bool:
        """REQUESTED → REJECTED (its units may be asked for again); REJECTED again: False."""
        if self.status == ReturnStatus.REJECTED:
            return False
        if self.status != ReturnStatus.REQUESTED:
            raise InvalidTransition(f"A return in status {self.status} cannot be REJECTED")
        self.status = ReturnStatus.REJECTED
        return True

    def mark_refunded(self, order: Order, now: datetime) -> bool:
        """RECEIVED → REFUNDED once the refund succeeded; REFUNDED again: False."""
        if self.status == ReturnStatus.REFUNDED:
            return False
        if self.status != ReturnStatus.RECEIVED:
            raise InvalidTransition(f"A return in status {self.status} cannot be REFUNDED")
        self.status = ReturnStatus.REFUNDED
        self.refunded_at = now
        order.events.append(
            ReturnRefunded(
                order_id=str(order.id),
                user_id=str(order.user_id),
                return_id=str(self.id),
                refund_amount=str(self.refund_amount),
            )
        )
        return True


class ReturnItem(Base):
    __tablename__ = "return_items"
    __table_args__ = (CheckConstraint("quantity >= 1", name="quantity_positive"),)

    return_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("returns.id", ondelete="CASCADE"), primary_key=True
    )
    product_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    quantity: Mapped[int] = mapped_column(Integer)
    refund_amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))


@dataclass(frozen=True)
class Delivery:
    """Units of one product that arrived in one shipment, and when."""

    product_id: uuid.UUID
    quantity: int
    delivered_at: datetime


def returnable_units(
    deliveries: Iterable[Delivery],
    held: Mapping[uuid.UUID, int],
    *,
    now: datetime,
    window_days: int,
) -> dict[uuid.UUID, int]:
    """Per product: units delivered within the window, capped by every delivered unit minus the
    units ``held`` by the order's returns that are not REJECTED."""
    window = timedelta(days=window_days)
    delivered: dict[uuid.UUID, int] = {}
    recent: dict[uuid.UUID, int] = {}
    for d in deliveries:
        delivered[d.product_id] = delivered.get(d.product_id, 0) + d.quantity
        if window_days > 0 and now - d.delivered_at < window:
            recent[d.product_id] = recent.get(d.product_id, 0) + d.quantity
    return {
        pid: max(0, min(recent.get(pid, 0), total - held.get(pid, 0))) for pid, total in delivered.items()
    }


def request_return(
    order: Order,
    lines: Mapping[uuid.UUID, int],
    *,
    reason: str,
    note: str | None,
    deliveries: Iterable[Delivery],
    held: Mapping[uuid.UUID, int],
    now: datetime,
    window_days: int,
) -> Return:
    """A new REQUESTED return of ``lines`` (product → units), refunded at the price paid."""
    if reason not in RETURN_REASONS:
        raise ValidationFailed("Unknown reason", {"reason": [f"Must be one of {', '.join(RETURN_REASONS)}."]})
    if not lines:
        raise ValidationFailed("A return needs at least one line", {"items": ["Must not be empty."]})
    prices = {item.product_id: item.unit_price for item in order.items}
    unknown = [str(pid) for pid in lines if pid not in prices]
    if unknown:
        raise ValidationFailed(
            "A product is not in the order",
            {"items": {"productId": [f"Not in the order: {', '.join(sorted(unknown))}."]}},
        )
    deliveries = list(deliveries)
    returnable = returnable_units(deliveries, held, now=now, window_days=window_days)
    too_many = [
        {"productId": str(pid), "requested": quantity, "returnable": returnable.get(pid, 0)}
        for pid, quantity in sorted(lines.items())
        if quantity > returnable.get(pid, 0)
    ]
    if too_many:
        # Something arrived, but nothing within the window: the window has closed.
        closed = bool(deliveries) and not any(
            window_days > 0 and now - d.delivered_at < timedelta(days=window_days) for d in deliveries
        )
        raise ReturnTooLarge(
            too_many,
            detail=(
                f"The return window of {window_days} days has closed"
                if closed
                else "A quantity is above what may be returned (delivered, in the window, not returned)"
            ),
        )
    ret = Return(
        id=new_id(),
        order_id=order.id,
        status=ReturnStatus.REQUESTED,
        reason=reason,
        note=note,
        restocked=None,
        created_at=now,
        received_at=None,
        refunded_at=None,
        refund_id=None,
    )
    total = Decimal("0.00")
    for pid, quantity in sorted(lines.items()):
        amount = prices[pid] * quantity
        total += amount
        ret.items.append(
            ReturnItem(return_id=ret.id, product_id=pid, quantity=quantity, refund_amount=amount)
        )
    ret.refund_amount = total
    order.events.append(
        ReturnRequested(
            order_id=str(order.id),
            user_id=str(order.user_id),
            return_id=str(ret.id),
            refund_amount=str(total),
        )
    )
    return ret
