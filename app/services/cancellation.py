"""Cancelling a PLACED order: shared by the order use cases, the payments worker and reconciliation."""

from __future__ import annotations

import uuid

from app.domain.actors import Actor
from app.domain.base import utcnow
from app.domain.errors import NotFound, VersionConflict
from app.domain.orders import PLACED, Order
from app.log import current_request_id
from app.services.unit_of_work import UnitOfWork


def with_request_id(actor: Actor) -> Actor:
    """The actor, stamped with the current request id for the order's history."""
    if actor.request_id:
        return actor
    return Actor(actor.user_id, actor.role, current_request_id())


def apply_cancellation(
    uow: UnitOfWork,
    order_id: uuid.UUID,
    actor: Actor,
    reason: str | None,
    *,
    expected_version: int | None = None,
) -> Order:
    """Cancel a PLACED order inside the caller's unit of work; it does NOT commit.

    Locks the order row, then its payment, then its products (id order) — callers that lock an
    order and its payment themselves must take them in that order too. Already CANCELLED → the
    order unchanged; any other status but PLACED → ``InvalidTransition``. Stock returns through
    ``ORDER_RELEASE`` ledger rows; a PENDING payment becomes FAILED (``PAYMENT_TIMEOUT`` when that
    is the reason, else ``ORDER_CANCELLED``) so a queued charge never charges; a FAILED one is left
    alone; a COMPLETED one gets a ``RefundRequested`` event. Records ``OrderCancelled`` and a
    history row. ``expected_version``: raise ``VersionConflict`` if the locked order is at another
    version (the caller's compare-and-set).
    """
    order = uow.orders.lock(order_id)
    if order is None:
        raise NotFound("The order was not found")
    if expected_version is not None and order.version != expected_version:
        raise VersionConflict(order.version)
    payment = uow.orders.lock_payment(order_id)
    products = {}
    if order.status == PLACED:
        products = uow.products.lock_many(item.product_id for item in order.items)
    cancellation = order.cancel(
        payment=payment, products=products, actor=with_request_id(actor), reason=reason, now=utcnow()
    )
    if cancellation is not None:
        uow.stock_ledger.add_all(cancellation.movements)
        uow.orders.add_history(cancellation.change)
        uow.orders.save()
    return order
