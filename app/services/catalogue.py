"""Catalogue use cases: browse products, and (admins) create, edit and restock them."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from app.domain.actors import Actor
from app.domain.audit import AuditAction, AuditResource, created, diff
from app.domain.base import new_id, utcnow
from app.domain.catalogue import (
    ADMIN_MOVEMENT_REASONS,
    REASON_RESTOCK,
    Product,
    ProductView,
    StockMovement,
    StockWouldGoNegative,
    change_stock,
)
from app.domain.errors import Conflict, InsufficientStock, NotFound, ValidationFailed
from app.services.unit_of_work import ReadOnlyUnitOfWork, Reads, UnitOfWork

# What an admin may bring the stock of one product up to (restocks and creation alike).
MAX_STOCK = 1_000_000
INITIAL_STOCK_NOTE = "initial stock"
# The API passes LOW_STOCK_THRESHOLD (app.config); this is its default.
DEFAULT_LOW_STOCK_THRESHOLD = 5
EDITABLE_FIELDS = frozenset({"name", "description", "price", "low_stock_threshold"})


def get_product(product_id: uuid.UUID) -> ProductView:
    with Reads() as reads:
        product = reads.products.get(product_id)
    if product is None:
        raise NotFound("The product was not found")
    return product


def list_products(q: str | None, page: int, page_size: int) -> tuple[list[Product], int]:
    """A page of products ordered by name; ``q`` matches names case-insensitively."""
    with ReadOnlyUnitOfWork() as uow:
        return uow.products.search(q, page, page_size)


def create_product(
    actor: Actor,
    name: str,
    description: str,
    price: Decimal,
    stock: int,
    low_stock_threshold: int = DEFAULT_LOW_STOCK_THRESHOLD,
) -> Product:
    """A new product; an initial stock is the product's first ledger row (RESTOCK)."""
    actor.require_staff()
    if not 0 <= stock <= MAX_STOCK:
        raise ValidationFailed("The stock is out of range", {"stock": [f"Between 0 and {MAX_STOCK}."]})
    with UnitOfWork() as uow:
        product = Product(
            id=new_id(),
            name=name,
            description=description,
            price=price,
            stock=0,
            low_stock_threshold=low_stock_threshold,
            created_at=utcnow(),
        )
        uow.products.add(product)
        if stock:
            movement = change_stock(
                product, stock, REASON_RESTOCK, note=INITIAL_STOCK_NOTE, actor_id=actor.user_id
            )
            uow.stock_ledger.add(movement)
        uow.audit(
            actor,
            AuditAction.PRODUCT_CREATED,
            AuditResource.PRODUCT,
            product.id,
            created(_audited(product)),
        )
        uow.commit()
    return product


def list_low_stock(actor: Actor, page: int, page_size: int) -> tuple[list[Product], int]:
    """Admin: products at or below their low-stock threshold, lowest stock first (SPEC §5.5)."""
    actor.require_staff()
    with ReadOnlyUnitOfWork() as uow:
        return uow.products.low_stock(page, page_size)


def _audited(product: Product) -> dict[str, Any]:
    """The product's fields under their API names, as the audit log compares them."""
    return {
        "productName": product.name,
        "description": product.description,
        "price": product.price,
        "stock": product.stock,
    }


def update_product(actor: Actor, product_id: uuid.UUID, changes: Mapping[str, Any]) -> Product:
    """Edit name, description and/or price; stock only changes through stock movements."""
    actor.require_staff()
    unknown = set(changes) - EDITABLE_FIELDS
    if unknown:
        raise ValidationFailed(
            "These fields cannot be changed", {name: ["Unknown field."] for name in sorted(unknown)}
        )
    with UnitOfWork() as uow:
        product = uow.products.lock(product_id)
        if product is None:
            raise NotFound("The product was not found")
        before = _audited(product)
        for field, value in changes.items():
            setattr(product, field, value)
        changed = diff(before, _audited(product))
        if changed:
            uow.audit(actor, AuditAction.PRODUCT_UPDATED, AuditResource.PRODUCT, product.id, changed)
        uow.commit()
    return product


def record_stock_movement(
    actor: Actor, product_id: uuid.UUID, delta: int, reason: str, note: str | None = None
) -> StockMovement:
    """Restock or adjust a product under its row lock; the stock never goes below zero."""
    actor.require_staff()
    if reason not in ADMIN_MOVEMENT_REASONS:
        raise ValidationFailed("Unknown reason", {"reason": [f"One of {', '.join(ADMIN_MOVEMENT_REASONS)}."]})
    if delta == 0:
        raise ValidationFailed("A stock movement changes the stock", {"delta": ["Must not be zero."]})
    with UnitOfWork() as uow:
        product = uow.products.lock(product_id)
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
        uow.stock_ledger.add(movement)
        uow.audit(
            actor,
            AuditAction.STOCK_MOVEMENT_RECORDED,
            AuditResource.PRODUCT,
            product.id,
            {"stock": {"old": product.stock - delta, "new": product.stock}},
        )
        uow.commit()
    return movement
