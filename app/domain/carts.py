"""Carts: one open cart per user, lines reference products at their current price."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Integer
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.domain.base import Base, new_id, utcnow
from app.domain.errors import Conflict, InsufficientStock

MAX_LINE_QUANTITY = 1000


class Cart(Base):
    __tablename__ = "carts"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("users.id"), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class CartItem(Base):
    __tablename__ = "cart_items"
    __table_args__ = (CheckConstraint("quantity BETWEEN 1 AND 1000", name="quantity_range"),)

    cart_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("carts.id", ondelete="CASCADE"), primary_key=True
    )
    product_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("products.id"), primary_key=True
    )
    quantity: Mapped[int] = mapped_column(Integer)
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


@dataclass(frozen=True)
class CartLineView:
    """A cart line as the customer sees it: at the product's current price."""

    product_id: uuid.UUID
    product_name: str
    quantity: int
    price: Decimal

    @property
    def subtotal(self) -> Decimal:
        return self.price * self.quantity


@dataclass(frozen=True)
class CartView:
    cart_id: uuid.UUID | None  # None: the user has no cart yet (read by an admin, who creates none)
    user_id: uuid.UUID
    lines: tuple[CartLineView, ...]
    currency: str

    @property
    def total_amount(self) -> Decimal:
        return sum((line.subtotal for line in self.lines), Decimal("0.00"))


def check_line_quantity(product_id: uuid.UUID, quantity: int, stock: int) -> None:
    """A line may hold at most the product's current stock and at most 1000 units.

    Both are conflicts with the current state (409), not invalid input: the request's own
    quantity was valid (1 to 1000); the sum with what the cart already holds is not.
    """
    if quantity > MAX_LINE_QUANTITY:
        raise Conflict(
            f"A cart line holds at most {MAX_LINE_QUANTITY} units; this one would hold {quantity}",
            productId=str(product_id),
            requested=quantity,
            available=min(stock, MAX_LINE_QUANTITY),
        )
    if quantity > stock:
        raise InsufficientStock(
            [{"productId": str(product_id), "requested": quantity, "available": stock}],
            f"Only {stock} in stock; the cart line would hold {quantity}",
        )
