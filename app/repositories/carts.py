"""Queries over carts and their lines."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import bindparam, delete, exists, literal, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.domain.base import new_id, utcnow
from app.domain.carts import Cart, CartItem
from app.domain.catalogue import Product
from app.domain.orders import CartLine
from app.domain.users import User
from app.repositories.rows import table_of

# The checkout's statements, built once over the tables (no ORM layer on the hot path).
_CARTS, _ITEMS, _USERS = table_of(Cart), table_of(CartItem), table_of(User)
_LOCK_FOR_CHECKOUT = (
    select(_CARTS.c.id, _USERS.c.address)
    .join(_USERS, _USERS.c.id == _CARTS.c.user_id)
    .where(_CARTS.c.user_id == bindparam("user_id"))
    .with_for_update(of=_CARTS)
)
_LINES = (
    select(_ITEMS.c.product_id, _ITEMS.c.quantity)
    .where(_ITEMS.c.cart_id == bindparam("cart_id"))
    .order_by(_ITEMS.c.product_id)
)
_CLEAR = delete(_ITEMS).where(_ITEMS.c.cart_id == bindparam("cart_id"))


class CartRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def view_rows(self, user_id: uuid.UUID) -> list[Any]:
        """The cart and its lines with current product names and prices, in one statement.

        No row: the user has no cart yet. One row with ``product_id`` None: an empty cart.
        """
        stmt = (
            select(Cart.id, CartItem.product_id, CartItem.quantity, Product.name, Product.price)
            .select_from(Cart)
            .outerjoin(CartItem, CartItem.cart_id == Cart.id)
            .outerjoin(Product, Product.id == CartItem.product_id)
            .where(Cart.user_id == user_id)
            .order_by(CartItem.added_at, CartItem.product_id)
        )
        return list(self.session.execute(stmt).all())

    def ensure(self, user_id: uuid.UUID) -> None:
        """Create the user's cart unless it exists (or the user does not, or was deleted)."""
        now = utcnow()
        source = select(literal(new_id()), literal(user_id), literal(now), literal(now)).where(
            exists().where(User.id == user_id, User.deleted_at.is_(None))
        )
        stmt = (
            insert(Cart)
            .from_select([Cart.id, Cart.user_id, Cart.created_at, Cart.updated_at], source)
            .on_conflict_do_nothing(index_elements=[Cart.user_id])
        )
        self.session.execute(stmt)

    def lock_shared(self, user_id: uuid.UUID) -> uuid.UUID | None:
        """``FOR SHARE`` on the cart row: line edits run side by side but wait for a checkout."""
        stmt = select(Cart.id).where(Cart.user_id == user_id).with_for_update(read=True)
        return self.session.scalar(stmt)

    def lock_for_checkout(self, user_id: uuid.UUID) -> tuple[uuid.UUID, dict[str, Any] | None] | None:
        """``FOR UPDATE`` on the cart row: one checkout of a cart at a time, and no edits meanwhile.

        With it, in the same statement, the user's profile address (the order's default shipping
        address). None when the user has no cart."""
        row = self.session.execute(_LOCK_FOR_CHECKOUT, {"user_id": user_id}).first()
        if row is None:
            return None
        return row[0], row[1]

    def add_quantity(
        self, cart_id: uuid.UUID, product_id: uuid.UUID, quantity: int, limit: int
    ) -> int | None:
        """Add to a line atomically (``ON CONFLICT DO UPDATE quantity = quantity + …``).

        Returns the line's new quantity, or None when the sum would exceed ``limit`` (nothing changes).
        """
        stmt = insert(CartItem).values(
            cart_id=cart_id, product_id=product_id, quantity=quantity, added_at=utcnow()
        )
        summed = CartItem.quantity + stmt.excluded.quantity
        upsert = stmt.on_conflict_do_update(
            index_elements=[CartItem.cart_id, CartItem.product_id],
            set_={"quantity": summed},
            where=summed <= limit,
        ).returning(CartItem.quantity)
        return self.session.scalar(upsert)

    def quantity_of(self, cart_id: uuid.UUID, product_id: uuid.UUID) -> int:
        stmt = select(CartItem.quantity).where(CartItem.cart_id == cart_id, CartItem.product_id == product_id)
        return int(self.session.scalar(stmt) or 0)

    def set_quantity(self, cart_id: uuid.UUID, product_id: uuid.UUID, quantity: int) -> bool:
        result = self.session.execute(
            update(CartItem)
            .where(CartItem.cart_id == cart_id, CartItem.product_id == product_id)
            .values(quantity=quantity)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def remove(self, cart_id: uuid.UUID, product_id: uuid.UUID) -> bool:
        result = self.session.execute(
            delete(CartItem)
            .where(CartItem.cart_id == cart_id, CartItem.product_id == product_id)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def clear(self, cart_id: uuid.UUID) -> None:
        self.session.execute(_CLEAR, {"cart_id": cart_id})

    def lines(self, cart_id: uuid.UUID) -> list[CartLine]:
        rows = self.session.execute(_LINES, {"cart_id": cart_id})
        return [CartLine(product_id, quantity) for product_id, quantity in rows]
