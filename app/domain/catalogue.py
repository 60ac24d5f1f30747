"""The catalogue: products and the stock ledger."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, Integer, Numeric, String, Text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.domain.base import Base, new_id, utcnow
from app.domain.events import ProductLowStock

REASON_RESTOCK = "RESTOCK"
REASON_ADJUSTMENT = "ADJUSTMENT"
REASON_ORDER_RESERVE = "ORDER_RESERVE"
REASON_ORDER_RELEASE = "ORDER_RELEASE"
REASON_RETURN = "RETURN"  # returned units put back into stock (SPEC §5.2)
MOVEMENT_REASONS = (
    REASON_RESTOCK,
    REASON_ADJUSTMENT,
    REASON_ORDER_RESERVE,
    REASON_ORDER_RELEASE,
    REASON_RETURN,
)
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
    # At or below this the product is low on stock (SPEC §5.5); 0 turns the alert off.
    low_stock_threshold: Mapped[int] = mapped_column(Integer, default=5, server_default="5")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


@dataclass(frozen=True, slots=True)
class ProductView:
    """A product as it is read (``GET /products/{id}``): plain values from its row, no session."""

    id: uuid.UUID
    name: str
    description: str
    price: Decimal
    stock: int
    low_stock_threshold: int


class StockMovement(Base):
    """One row per stock change, written in the same transaction: stock == sum(delta)."""

    __tablename__ = "stock_movements"
    __table_args__ = (
        CheckConstraint(
            "reason IN ('RESTOCK', 'ADJUSTMENT', 'ORDER_RESERVE', 'ORDER_RELEASE', 'RETURN')",
            name="reason_r2",
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


def crosses_low_stock(before: int, after: int, threshold: int | None) -> bool:
    """From above the threshold to at or below it (a threshold of 0 never alerts)."""
    if not threshold or threshold <= 0:
        return False
    return before > threshold >= after


def is_low_on_stock(product: Product) -> bool:
    return bool(product.low_stock_threshold) and product.stock <= product.low_stock_threshold


class StockWouldGoNegative(ValueError):
    """A stock change would take the stock below zero."""

    def __init__(self, product_id: uuid.UUID, requested: int, available: int) -> None:
        super().__init__(f"product {product_id}: requested {requested}, available {available}")
        self.product_id = product_id
        self.requested = requested
        self.available = available


def change_stock(
    product: Product,
    delta: int,
    reason: str,
    *,
    note: str | None = None,
    order_id: uuid.UUID | None = None,
    actor_id: uuid.UUID | None = None,
) -> StockMovement:
    """Apply ``delta`` to a product (already locked by the caller) and return its ledger row.

    Every stock change goes through here, so ``stock == sum(movements.delta)`` always holds. A
    change that takes the product from above its low-stock threshold to at or below it records
    ``ProductLowStock`` on the product: once per crossing, since the caller holds the row lock.
    """
    if reason not in MOVEMENT_REASONS:
        raise ValueError(f"unknown stock movement reason {reason!r}")
    if product.stock + delta < 0:
        raise StockWouldGoNegative(product.id, -delta, product.stock)
    before = product.stock
    product.stock += delta
    if crosses_low_stock(before, product.stock, product.low_stock_threshold):
        product.events.append(
            ProductLowStock(
                product_id=str(product.id),
                product_name=product.name,
                stock=product.stock,
                low_stock_threshold=product.low_stock_threshold,
            )
        )
    return StockMovement(
        id=new_id(),
        product_id=product.id,
        delta=delta,
        reason=reason,
        note=note,
        stock_after=product.stock,
        order_id=order_id,
        actor_id=actor_id,
        created_at=utcnow(),
    )
