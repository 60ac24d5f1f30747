"""Cart use cases: one open cart per user, created on first use, emptied (not replaced) by checkout."""

from __future__ import annotations

import uuid

from app.domain.carts import MAX_LINE_QUANTITY, CartLineView, CartView, check_line_quantity
from app.domain.errors import NotFound
from app.services.unit_of_work import UnitOfWork, run_in_transaction


def _view(rows: list, user_id: uuid.UUID, currency: str) -> CartView:  # type: ignore[type-arg]
    lines = tuple(
        CartLineView(product_id=r.product_id, product_name=r.name, quantity=r.quantity, price=r.price)
        for r in rows
        if r.product_id is not None
    )
    return CartView(cart_id=rows[0].id, user_id=user_id, lines=lines, currency=currency)


def get_cart(user_id: uuid.UUID, currency: str, *, create: bool = True) -> CartView:
    """The user's cart at current prices; created on first use (one statement once it exists).

    ``create=False`` (someone else reading it: an admin) never writes: with no cart yet the answer
    is an empty cart without an id.
    """
    with UnitOfWork() as uow:  # rolled back at the end: no idle transaction holds a snapshot
        rows = uow.carts.view_rows(user_id)
        if rows:
            return _view(rows, user_id, currency)
        if not create:
            if uow.users.get_active(user_id) is None:
                raise NotFound("The user was not found")
            return CartView(cart_id=None, user_id=user_id, lines=(), currency=currency)
        uow.carts.ensure(user_id)
        uow.commit()
    with UnitOfWork() as uow:
        rows = uow.carts.view_rows(user_id)
    if not rows:
        raise NotFound("The user was not found")
    return _view(rows, user_id, currency)


def _open_cart(uow: UnitOfWork, user_id: uuid.UUID) -> uuid.UUID:
    uow.carts.ensure(user_id)
    cart_id = uow.carts.lock_shared(user_id)
    if cart_id is None:
        raise NotFound("The user was not found")
    return cart_id


def _product_stock(uow: UnitOfWork, product_id: uuid.UUID) -> int:
    product = uow.products.get(product_id)
    if product is None:
        raise NotFound("The product was not found")
    return product.stock


def add_item(user_id: uuid.UUID, product_id: uuid.UUID, quantity: int, currency: str) -> CartView:
    """Add ``quantity`` to the product's line (created if absent); the line may not exceed stock or 1000."""

    def transaction(uow: UnitOfWork) -> None:
        cart_id = _open_cart(uow, user_id)
        stock = _product_stock(uow, product_id)
        check_line_quantity(product_id, quantity, stock)
        if uow.carts.add_quantity(cart_id, product_id, quantity, min(stock, MAX_LINE_QUANTITY)) is None:
            check_line_quantity(product_id, uow.carts.quantity_of(cart_id, product_id) + quantity, stock)
        uow.commit()

    run_in_transaction(transaction)
    return get_cart(user_id, currency)


def update_item(user_id: uuid.UUID, product_id: uuid.UUID, quantity: int, currency: str) -> CartView:
    """Set a line's quantity; the product must already be in the cart."""

    def transaction(uow: UnitOfWork) -> None:
        cart_id = _open_cart(uow, user_id)
        stock = _product_stock(uow, product_id)
        check_line_quantity(product_id, quantity, stock)
        if not uow.carts.set_quantity(cart_id, product_id, quantity):
            raise NotFound("The product is not in the cart")
        uow.commit()

    run_in_transaction(transaction)
    return get_cart(user_id, currency)


def remove_item(user_id: uuid.UUID, product_id: uuid.UUID) -> None:
    """Remove a line; NotFound when the product is not in the cart."""

    def transaction(uow: UnitOfWork) -> None:
        cart_id = _open_cart(uow, user_id)
        if not uow.carts.remove(cart_id, product_id):
            raise NotFound("The product is not in the cart")
        uow.commit()

    run_in_transaction(transaction)


def empty_cart(user_id: uuid.UUID) -> None:
    """Remove every line (the cart and its id stay)."""

    def transaction(uow: UnitOfWork) -> None:
        uow.carts.clear(_open_cart(uow, user_id))
        uow.commit()

    run_in_transaction(transaction)
