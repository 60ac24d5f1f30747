"""Queries over shipments and returns (changed only under their order's row lock)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.domain.fulfilment import Shipment, ShipmentItem, ShipmentStatus
from app.domain.returns import Delivery, Return, ReturnItem, ReturnStatus


class ShipmentRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, shipment: Shipment) -> None:
        self.session.add(shipment)

    def for_order(self, order_id: uuid.UUID) -> list[Shipment]:
        """The order's shipments, oldest first, with their lines (two statements, however many)."""
        stmt = (
            select(Shipment)
            .where(Shipment.order_id == order_id)
            .order_by(Shipment.shipped_at, Shipment.id)
            .execution_options(populate_existing=True)
        )
        return list(self.session.scalars(stmt))

    def get(self, order_id: uuid.UUID, shipment_id: uuid.UUID) -> Shipment | None:
        stmt = select(Shipment).where(Shipment.id == shipment_id, Shipment.order_id == order_id)
        return self.session.scalars(stmt.execution_options(populate_existing=True)).first()

    def deliveries(self, order_id: uuid.UUID) -> list[Delivery]:
        """Units of the order's delivered shipments, with when they arrived (returns' input)."""
        stmt = (
            select(ShipmentItem.product_id, ShipmentItem.quantity, Shipment.delivered_at)
            .join(Shipment, Shipment.id == ShipmentItem.shipment_id)
            .where(Shipment.order_id == order_id, Shipment.status == ShipmentStatus.DELIVERED)
        )
        rows: list[tuple[uuid.UUID, int, datetime]] = [tuple(r) for r in self.session.execute(stmt)]  # type: ignore[misc]
        return [Delivery(pid, quantity, at) for pid, quantity, at in rows if at is not None]


class ReturnRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, ret: Return) -> None:
        self.session.add(ret)

    def for_order(self, order_id: uuid.UUID) -> list[Return]:
        stmt = (
            select(Return)
            .where(Return.order_id == order_id)
            .order_by(Return.created_at, Return.id)
            .execution_options(populate_existing=True)
        )
        return list(self.session.scalars(stmt))

    def get(self, order_id: uuid.UUID, return_id: uuid.UUID) -> Return | None:
        stmt = select(Return).where(Return.id == return_id, Return.order_id == order_id)
        return self.session.scalars(stmt.execution_options(populate_existing=True)).first()

    def find(self, return_id: uuid.UUID) -> Return | None:
        stmt = select(Return).where(Return.id == return_id)
        return self.session.scalars(stmt.execution_options(populate_existing=True)).first()

    def by_refund(self, refund_id: uuid.UUID) -> Return | None:
        return self.session.scalars(select(Return).where(Return.refund_id == refund_id)).first()

    def held_units(self, order_id: uuid.UUID) -> dict[uuid.UUID, int]:
        """Per product, the units of the order's returns that are not REJECTED."""
        stmt = (
            select(ReturnItem.product_id, func.sum(ReturnItem.quantity))
            .join(Return, Return.id == ReturnItem.return_id)
            .where(Return.order_id == order_id, Return.status != ReturnStatus.REJECTED)
            .group_by(ReturnItem.product_id)
        )
        return {pid: int(total) for pid, total in self.session.execute(stmt)}
