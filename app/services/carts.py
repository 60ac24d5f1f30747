"""Cart use cases: one open cart per user, created on first use, emptied (not replaced) by checkout."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from app.domain.carts import MAX_LINE_QUANTITY, CartLineView, CartView, check_line_quantity
from app.domain.errors import NotFound
from app.repositories.carts import CartRepository
from app.repositories.catalogue import ProductRepository
from app.repositories.users import UserRepository
from app.services.transactions import retry_on_contention
from app.services.unit_of_work import UnitOfWork


def _view(rows: list, user_id: uuid.UUID, currency: str) -> CartView:  # type: ignore[type-arg]
    lines = tuple(
        CartLineView(product_id=r.product_id, product_name=r.name, quantity=r.quantity, price=r.price)
        for r in rows
        if r.product_id is not None
    )
    return CartView(cart_id=rows[0].id, user_id=user_id, lines=lines, currency=currency)


def get_cart(session: Session, user_id: uuid.UUID, currency: str, *, create: bool = True) -> CartView:
    """The user's cart at current prices; created on first use (one statement once it exists).

    ``create=False`` (someone else reading it: an admin) never writes: with no cart yet the answer
    is an empty cart without an id.
    """
    repo = CartRepository(session)
    rows = repo.view_rows(user_id)
    if not rows and not create:
        owner = UserRepository(session).get_active(user_id)
        session.rollback()
        if owner is None:
            raise NotFound("The user was not found")
        return CartView(cart_id=None, user_id=user_id, lines=(), currency=currency)
    if not rows:
        with UnitOfWork(session) as uow:
            repo.ensure(user_id)
            uow.commit()
        rows = repo.view_rows(user_id)
        if not rows:
            raise NotFound("The user was not found")
    session.rollback()  # end the read transaction: no idle transaction holds a snapshot
    return _view(rows, user_id, currency)


def _open_cart(session: Session, user_id: uuid.UUID) -> uuid.UUID:
    repo = CartRepository(session)
    repo.ensure(user_id)
    cart_id = repo.lock_shared(user_id)
    if cart_id is None:
        raise NotFound("The user was not found")
    return cart_id


def _product_stock(session: Session, product_id: uuid.UUID) -> int:
    product = ProductRepository(session).get(product_id)
    if product is None:
        raise NotFound("The product was not found")
    return product.stock


def add_item(
    session: Session, user_id: uuid.UUID, product_id: uuid.UUID, quantity: int, currency: str
) -> CartView:
    """Add ``quantity`` to the product's line (created if absent); the line may not exceed stock or 1000."""

    def transaction() -> None:
        with UnitOfWork(session) as uow:
            cart_id = _open_cart(session, user_id)
            stock = _product_stock(session, product_id)
            check_line_quantity(product_id, quantity, stock)
            repo = CartRepository(session)
            if repo.add_quantity(cart_id, product_id, quantity, min(stock, MAX_LINE_QUANTITY)) is None:
                check_line_quantity(product_id, repo.quantity_of(cart_id, product_id) + quantity, stock)
            uow.commit()

    retry_on_contention(session, transaction)
    return get_cart(session, user_id, currency)


def update_item(
    session: Session, user_id: uuid.UUID, product_id: uuid.UUID, quantity: int, currency: str
) -> CartView:
    """Set a line's quantity; the product must already be in the cart."""

    def transaction() -> None:
        with UnitOfWork(session) as uow:
            cart_id = _open_cart(session, user_id)
            stock = _product_stock(session, product_id)
            check_line_quantity(product_id, quantity, stock)
            if not CartRepository(session).set_quantity(cart_id, product_id, quantity):
                raise NotFound("The product is not in the cart")
            uow.commit()

    retry_on_contention(session, transaction)
    return get_cart(session, user_id, currency)


def remove_item(session: Session, user_id: uuid.UUID, product_id: uuid.UUID) -> None:
    """Remove a line; NotFound when the product is not in the cart."""

    def transaction() -> None:
        with UnitOfWork(session) as uow:
            cart_id = _open_cart(session, user_id)
            if not CartRepository(session).remove(cart_id, product_id):
                raise NotFound("The product is not in the cart")
            uow.commit()

    retry_on_contention(session, transaction)


def empty_cart(session: Session, user_id: uuid.UUID) -> None:
    """Remove every line (the cart and its id stay)."""

    def transaction() -> None:
        with UnitOfWork(session) as uow:
            CartRepository(session).clear(_open_cart(session, user_id))
            uow.commit()

    retry_on_contention(session, transaction)
