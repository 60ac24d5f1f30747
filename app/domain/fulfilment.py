"""Shipments: where the units of an order went, with which carrier and tracking, and when they arrived.

The rules (SPEC §5.1):

- An order ships in one or more shipments, only once its payment is COMPLETED, never more units
  of a line than were ordered (``ShipmentTooLarge`` lists ``{productId, requested, remaining}``);
  a product that is not in the order is a ``ValidationFailed``. Without lines, a shipment takes
  every unit not shipped yet; with nothing left to ship it is an ``InvalidTransition``.
- The order's status follows its units: SHIPPED when every unit has shipped, DELIVERED when every
  shipment is delivered (each change is a history row with its actor). While only part has
  shipped it stays PLACED (``fulfillmentStatus`` PARTIALLY_SHIPPED) and cannot be cancelled.
- Every shipment records ``OrderShipped`` (carrier, tracking number); the delivery of the last
  one records ``OrderDelivered``.

The caller holds the order's row lock: quantities are read and written under it, so two admins
shipping the same units at once are serialised and the second sees what the first shipped.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, Integer, String
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.domain import payments as pay
from app.domain.actors import Actor
from app.domain.base import Base, new_id
from app.domain.errors import InvalidTransition, ShipmentTooLarge, ValidationFailed
from app.domain.events import OrderDelivered, OrderShipped
from app.domain.orders import (
    CANCELLED,
    DELIVERED,
    PLACED,
    SHIPPED,
    Order,
    OrderStatusChange,
)


class ShipmentStatus(StrEnum):
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"


SHIPMENT_STATUSES = tuple(ShipmentStatus)


class Shipment(Base):
    __tablename__ = "shipments"
    __table_args__ = (
        CheckConstraint("status IN ('SHIPPED', 'DELIVERED')", name="status"),
        Index("ix_shipments_order_id_shipped_at", "order_id", "shipped_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=new_id)
    order_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("orders.id", ondelete="CASCADE")
    )
    carrier: Mapped[str | None] = mapped_column(String(100))
    tracking_number: Mapped[str | None] = mapped_column(String(100))
    tracking_url: Mapped[str | None] = mapped_column(String(2048))
    status: Mapped[str] = mapped_column(String(16), default=ShipmentStatus.SHIPPED)
    shipped_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    items: Mapped[list[ShipmentItem]] = relationship(
        "ShipmentItem",
        order_by="ShipmentItem.product_id",
        cascade="all, delete-orphan",
        passive_deletes=True,
        lazy="selectin",
    )

    @property
    def delivered(self) -> bool:
        return self.status == ShipmentStatus.DELIVERED


class ShipmentItem(Base):
    __tablename__ = "shipment_items"
    __table_args__ = (CheckConstraint("quantity >= 1", name="quantity_positive"),)

    shipment_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("shipments.id", ondelete="CASCADE"), primary_key=True
    )
    product_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    quantity: Mapped[int] = mapped_column(Integer)


@dataclass
class Shipped:
    """What a shipment creates: the shipment, and the order's SHIPPED history row if it was the last."""

    shipment: Shipment
    change: OrderStatusChange | None


def ship(
    order: Order,
    lines: Mapping[uuid.UUID, int] | None,
    *,
    carrier: str | None,
    tracking_number: str | None,
    tracking_url: str | None,
    actor: Actor,
    now: datetime,
) -> Shipped:
    """Ship ``lines`` (product → units; None: every unit not shipped yet) of a PLACED, paid order.

    Checks, in order: the order can ship (PLACED, not CANCELLED, something left: 409), every
    product is in the order (422), the payment is COMPLETED (409), every quantity is at most what
    is left to ship (409 with every offending line).
    """
    if order.status == CANCELLED:
        raise InvalidTransition("A cancelled order cannot ship")
    remaining = order.remaining_to_ship()
    if order.status != PLACED or not any(remaining.values()):
        raise InvalidTransition("Nothing is left to ship")
    if lines is not None:
        unknown = [str(pid) for pid in lines if pid not in remaining]
        if unknown:
            raise ValidationFailed(
                "A product is not in the order",
                {"items": {"productId": [f"Not in the order: {', '.join(sorted(unknown))}."]}},
            )
    if order.payment is None or order.payment.status != pay.COMPLETED:
        raise InvalidTransition("An order can only be shipped once its payment is COMPLETED")
    wanted = dict(lines) if lines is not None else {pid: left for pid, left in remaining.items() if left}
    too_many = [
        {"productId": str(pid), "requested": quantity, "remaining": remaining[pid]}
        for pid, quantity in sorted(wanted.items())
        if quantity > remaining[pid]
    ]
    if too_many:
        raise ShipmentTooLarge(too_many)

    shipment = Shipment(
        id=new_id(),
        order_id=order.id,
        carrier=carrier,
        tracking_number=tracking_number,
        tracking_url=tracking_url,
        status=ShipmentStatus.SHIPPED,
        shipped_at=now,
        delivered_at=None,
    )
    for product_id, quantity in sorted(wanted.items()):
        shipment.items.append(ShipmentItem(shipment_id=shipment.id, product_id=product_id, quantity=quantity))
    for item in order.items:
        item.quantity_shipped = (item.quantity_shipped or 0) + wanted.get(item.product_id, 0)
    order.events.append(
        OrderShipped(
            order_id=str(order.id),
            user_id=str(order.user_id),
            shipment_id=str(shipment.id),
            carrier=carrier,
            tracking_number=tracking_number,
            tracking_url=tracking_url,
        )
    )
    change = None
    if not any(order.remaining_to_ship().values()):
        change = order.move_to(SHIPPED, actor=actor, reason=None, now=now)
    else:
        order.version += 1  # the order's body (quantityShipped) changed: its ETag must too
        order.updated_at = now
    return Shipped(shipment=shipment, change=change)


def deliver(
    order: Order,
    shipment: Shipment,
    shipments: Sequence[Shipment],
    *,
    actor: Actor,
    now: datetime,
) -> OrderStatusChange | None:
    """Mark one shipment DELIVERED (again: nothing changes). When every unit has shipped and every
    shipment of the order (``shipments``, this one among them) is delivered, the order becomes
    DELIVERED and records ``OrderDelivered``; that history row is returned."""
    if shipment.order_id != order.id:
        raise ValueError("the shipment belongs to another order")
    if shipment.delivered:
        return None
    shipment.status = ShipmentStatus.DELIVERED
    shipment.delivered_at = now
    if order.status == SHIPPED and all(s.delivered for s in shipments):
        change = order.move_to(DELIVERED, actor=actor, reason=None, now=now)
        order.events.append(
            OrderDelivered(order_id=str(order.id), user_id=str(order.user_id), shipment_id=str(shipment.id))
        )
        return change
    return None


def deliver_all(
    order: Order, shipments: Sequence[Shipment], *, actor: Actor, now: datetime
) -> OrderStatusChange:
    """``PUT /orders/{id}`` DELIVERED on a SHIPPED order: every shipment delivered, the order with them.

    (An order shipped before shipments existed has none: it is simply DELIVERED.)
    """
    if order.status != SHIPPED:
        raise InvalidTransition(f"An order cannot go from {order.status} to DELIVERED")
    pending = [s for s in shipments if not s.delivered]
    for shipment in pending:
        shipment.status = ShipmentStatus.DELIVERED
        shipment.delivered_at = now
    change = order.move_to(DELIVERED, actor=actor, reason=None, now=now)
    order.events.append(
        OrderDelivered(
            order_id=str(order.id),
            user_id=str(order.user_id),
            shipment_id=str(pending[-1].id) if pending else None,
        )
    )
    return change
