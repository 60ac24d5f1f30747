"""The catalogue: products and the stock ledger."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, Integer, Numeric, String, Text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.domain.base import Base, new_id, utcnow

REASON_RESTOCK = "RESTOCK"
REASON_ADJUSTMENT = "ADJUSTMENT"
REASON_ORDER_RESERVE = "ORDER_RESERVE"
REASON_ORDER_RELEASE = "ORDER_RELEASE"
MOVEMENT_REASONS = (REASON_RESTOCK, REASON_ADJUSTMENT, REASON_ORDER_RESERVE, REASON_ORDER_RELEASE)
ADMIN_MOVEMENT_REASONS = (REASON_RESTOCK, REASON_ADJUSTMENT)


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("stock >= 0", name="stock_non_negative"),
        CheckConstraint("price >= 0", name="price_non_negative"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    price: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    stock: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class StockMovement(Base):
    """One row per stock change, written in the same transaction: stock == sum(delta)."""

    __tablename__ = "stock_movements"
    __table_args__ = (
        CheckConstraint(
            "reason IN ('RESTOCK', 'ADJUSTMENT', 'ORDER_RESERVE', 'ORDER_RELEASE')", name="reason"
        ),
        CheckConstraint("stock_after >= 0", name="stock_after_non_negative"),
        Index("ix_stock_movements_product_id", "product_id"),
        Index("ix_stock_movements_order_id", "order_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=new_id)
    product_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("products.id"))
    delta: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)
    stock_after: Mapped[int] = mapped_column(Integer)
    order_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    actor_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
