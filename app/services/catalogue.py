"""Catalogue use cases: browse products, and (admins) create, edit and restock them."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from app.domain.actors import Actor
from app.domain.base import new_id, utcnow
from app.domain.catalogue import (
    ADMIN_MOVEMENT_REASONS,
    REASON_RESTOCK,
    Product,
    StockMovement,
    StockWouldGoNegative,
    change_stock,
)
from app.domain.errors import Conflict, Forbidden, InsufficientStock, NotFound, ValidationFailed
from app.repositories.catalogue import ProductRepository, StockLedgerRepository
from app.services.unit_of_work import UnitOfWork

# What an admin may bring the stock of one product up to (restocks and creation alike).
MAX_STOCK = 1_000_000
INITIAL_STOCK_NOTE = "initial stock"
EDITABLE_FIELDS = frozenset({"name", "description", "price"})


def _require_admin(actor: Actor) -> None:
    if not (actor.is_admin or actor.is_system):
        raise Forbidden("This operation is reserved to administrators")


def get_product(product_id: uuid.UUID) -> Product:
    with UnitOfWork(read_only=True) as uow:
        product = ProductRepository(uow.session).get(product_id)
        if product is None:
            raise NotFound("The product was not found")
        uow.session.expunge(product)  # loaded: it outlives the read-only transaction
        return product


def list_products(q: str | None, page: int, page_size: int) -> tuple[list[Product], int]:
    """A page of products ordered by name; ``q`` matches names case-insensitively."""
    with UnitOfWork(read_only=True) as uow:
        products, total = ProductRepository(uow.session).search(q, page, page_size)
        for product in products:
            uow.session.expunge(product)
        return products, total


def create_product(actor: Actor, name: str, description: str, price: Decimal, stock: int) -> Product:
    """A new product; an initial stock is the product's first ledger row (RESTOCK)."""
    _require_admin(actor)
    if not 0 <= stock <= MAX_STOCK:
        raise ValidationFailed("The stock is out of range", {"stock": [f"Between 0 and {MAX_STOCK}."]})
    with UnitOfWork() as uow:
        product = Product(
            id=new_id(), name=name, description=description, price=price, stock=0, created_at=utcnow()
        )
        ProductRepository(uow.session).add(product)
        uow.flush()  # the ledger row references the product
        if stock:
            movement = change_stock(
                product, stock, REASON_RESTOCK, note=INITIAL_STOCK_NOTE, actor_id=actor.user_id
            )
            StockLedgerRepository(uow.session).add(movement)
        uow.commit()
    return product


def update_product(actor: Actor, product_id: uuid.UUID, changes: Mapping[str, Any]) -> Product:
    """Edit name, description and/or price; stock only changes through stock movements."""
    _require_admin(actor)
    unknown = set(changes) - EDITABLE_FIELDS
    if unknown:
        raise ValidationFailed(
            "These fields cannot be changed", {name: ["Unknown field."] for name in sorted(unknown)}
        )
    with UnitOfWork() as uow:
        product = ProductRepository(uow.session).lock(product_id)
        if product is None:
            raise NotFound("The product was not found")
        for field, value in changes.items():
            setattr(product, field, value)
        uow.commit()
    return product


def record_stock_movement(
    actor: Actor, product_id: uuid.UUID, delta: int, reason: str, note: str | None = None
) -> StockMovement:
    """Restock or adjust a product under its row lock; the stock never goes below zero."""
    _require_admin(actor)
    if reason not in ADMIN_MOVEMENT_REASONS:
        raise ValidationFailed("Unknown reason", {"reason": [f"One of {', '.join(ADMIN_MOVEMENT_REASONS)}."]})
    if delta == 0:
        raise ValidationFailed("A stock movement changes the stock", {"delta": ["Must not be zero."]})
    with UnitOfWork() as uow:
        product = ProductRepository(uow.session).lock(product_id)
        if product is None:
            raise NotFound("The product was not found")
        if product.stock + delta > MAX_STOCK:
            raise Conflict(
                f"The stock would be {product.stock + delta}, above the maximum of {MAX_STOCK}",
                stock=product.stock,
            )
        try:
            movement = change_stock(product, delta, reason, note=note, actor_id=actor.user_id)
        except StockWouldGoNegative as exc:
            raise InsufficientStock(
                [{"productId": str(exc.product_id), "requested": exc.requested, "available": exc.available}],
                detail=f"The stock cannot go below zero: {exc.available} available, "
                f"{exc.requested} requested",
            ) from exc
        StockLedgerRepository(uow.session).add(movement)
        uow.commit()
    return movement
