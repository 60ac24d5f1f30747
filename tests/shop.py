"""Test helpers for orders and carts: products through the stock ledger, orders through the factory."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from app.domain.actors import Actor
from app.domain.base import utcnow
from app.domain.catalogue import REASON_RESTOCK, Product, change_stock
from app.domain.orders import CartLine, Order
from app.domain.payments import CREDIT_CARD


def make_product(session: Any, *, price: str = "10.00", stock: int = 10, name: str | None = None) -> Product:
    """A product whose stock came in through a RESTOCK ledger row (so stock == sum(movements))."""
    product = Product(
        name=name or f"Product {uuid.uuid4().hex[:6]}", description="", price=Decimal(price), stock=0
    )
    session.add(product)
    session.flush()
    if stock:
        session.add(change_stock(product, stock, REASON_RESTOCK))
    session.commit()
    return product


def place_order_directly(session: Any, user_id: uuid.UUID, lines: dict[uuid.UUID, int]) -> Order:
    """An order placed through the domain factory, bypassing the cart (for tests of later steps)."""
    from app.services.unit_of_work import UnitOfWork

    uow = UnitOfWork(lambda: session, relay_after_commit=False).__enter__()
    products = uow.products.lock_many(lines)
    placement = Order.place_from(
        user_id=user_id,
        lines=[CartLine(pid, qty) for pid, qty in lines.items()],
        products=products,
        now=utcnow(),
        currency="USD",
        payment_method=CREDIT_CARD,
        payment_token="pm_card_visa",
        actor=Actor(user_id, "customer"),
    )
    uow.orders.add(placement.order)
    uow.orders.add_history(placement.history)
    uow.stock_ledger.add_all(placement.movements)
    uow.commit()
    return placement.order
