"""Order use cases: place (checkout), read, list, change the status, delete."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy.orm.exc import StaleDataError

from app.domain.actors import Actor
from app.domain.audit import AuditAction, AuditResource, diff
from app.domain.base import utcnow
from app.domain.errors import (
    DomainError,
    FeatureDisabled,
    Forbidden,
    InvalidTransition,
    NotFound,
    PreconditionFailed,
    TotalChanged,
    ValidationFailed,
    VersionConflict,
)
from app.domain.fulfilment import deliver_all, ship
from app.domain.orders import (
    CANCELLED,
    DELIVERED,
    PLACED,
    SHIPPED,
    Order,
    OrderStatusChange,
    OrderView,
    authorize_transition,
    cancel_reason_for,
    plan_transition,
    visible_order,
)
from app.log import get_logger
from app.services import features
from app.services.cancellation import apply_cancellation, with_request_id
from app.services.idempotency import Claim, Idempotent, Replay, run_idempotently
from app.services.unit_of_work import ReadOnlyUnitOfWork, Reads, UnitOfWork, run_in_transaction

log = get_logger(__name__)


# ---- placing an order (checkout) ----------------------------------------------------------------

# A checkout waits at most this long for a row lock before the attempt is retried (55P03).
CHECKOUT_LOCK_TIMEOUT_MS = 2000


@dataclass(frozen=True)
class CheckoutRequest:
    user_id: uuid.UUID
    cart_id: uuid.UUID
    payment_method: str
    payment_token: str
    # The total the customer saw; None accepts whatever the current prices make.
    expected_total: Decimal | None = None
    # Where the order goes; None: the user's profile address (neither → ValidationFailed).
    shipping_address: Mapping[str, Any] | None = None


def _reject_foreign(actor: Actor, detail: str) -> DomainError:
    """Carts and checkout belong to their user alone: 403 for an admin, 404 (never reveal) otherwise."""
    if actor.is_admin:
        return Forbidden("Carts and checkout belong to their user alone")
    return NotFound(detail)


def place_order(
    actor: Actor,
    request: CheckoutRequest,
    *,
    currency: str,
    feature_ttl: float,
    idempotency: Idempotent[Order] | None = None,
) -> Order | Replay:
    """Turn the user's cart into an order in one transaction (see ``_checkout``), at most once per
    idempotency key: a repeat gets the first answer (``Replay``)."""
    if request.user_id != actor.user_id:
        raise _reject_foreign(actor, "The user was not found")
    if not features.is_enabled(features.CHECKOUT, ttl=feature_ttl, user_id=request.user_id):
        raise FeatureDisabled("Checkout is temporarily disabled; retry later", retry_after=30)
    placer = with_request_id(actor)
    return run_idempotently(
        idempotency, lambda claim: _checkout(placer, request, currency=currency, claim=claim)
    )


def _checkout(actor: Actor, request: CheckoutRequest, *, currency: str, claim: Claim[Order] | None) -> Order:
    """Lock the cart, then its products in id order; check every line; reserve; write; empty the cart."""

    def transaction(uow: UnitOfWork) -> Order:
        locked = uow.carts.lock_for_checkout(request.user_id)
        if locked is None or locked[0] != request.cart_id:
            raise _reject_foreign(actor, "The cart was not found")
        cart_id, profile_address = locked
        shipping_address = request.shipping_address or profile_address
        if not shipping_address:
            raise ValidationFailed(
                "There is no address to ship to",
                {"shippingAddress": ["Required: the user's profile has no address."]},
            )
        lines = uow.carts.lines(cart_id)
        if not lines:
            raise ValidationFailed("The cart is empty", {"cartId": ["The cart is empty."]})
        products = uow.products.lock_many(line.product_id for line in lines)
        placement = Order.place_from(
            user_id=request.user_id,
            lines=lines,
            products=products,
            now=utcnow(),
            currency=currency,
            payment_method=request.payment_method,
            payment_token=request.payment_token,
            actor=actor,
            shipping_address=shipping_address,
        )
        placement.order.view_for(actor)
        total = placement.order.total_amount
        if request.expected_total is not None and total != request.expected_total:
            raise TotalChanged(request.expected_total, total)
        # Plain INSERTs/UPDATEs rather than the ORM's flush, which costs a checkout a large share
        # of its CPU (docs/bench).
        uow.orders.insert_placement(placement)
        uow.stock_ledger.insert_all(placement.movements)
        uow.products.save_stock(products.values())
        uow.carts.clear(cart_id)
        if claim is not None:
            claim.remember(uow, placement.order)
        uow.commit()
        return placement.order

    return run_in_transaction(
        transaction, uow_factory=lambda: UnitOfWork(lock_timeout_ms=CHECKOUT_LOCK_TIMEOUT_MS)
    )


# ---- reading orders -----------------------------------------------------------------------------


def get_order(actor: Actor, order_id: uuid.UUID) -> OrderView:
    """The order with its items and payment as its owner or an admin reads it (one statement,
    however many lines, without a transaction or a session)."""
    with Reads() as reads:
        order = reads.orders.get(order_id)
    return visible_order(actor, order).view_for(actor)


def list_orders(
    actor: Actor,
    *,
    status: str | None,
    user_id: uuid.UUID | None,
    page: int,
    page_size: int,
) -> tuple[list[Order], int]:
    """Customers see their own orders; staff all of them (optionally one user's), deleted ones too."""
    if not actor.is_staff:
        if user_id is not None and user_id != actor.user_id:
            raise NotFound("The user was not found")
        user_id = actor.user_id
    with ReadOnlyUnitOfWork() as uow:
        orders, total = uow.orders.search(
            user_id=user_id,
            status=status,
            include_deleted=actor.is_staff,
            page=page,
            page_size=page_size,
        )
    return [order.view_for(actor) for order in orders], total


def order_history(actor: Actor, order_id: uuid.UUID) -> list[OrderStatusChange]:
    """Every status change of the order, oldest first (the first is its creation as PLACED)."""
    with ReadOnlyUnitOfWork() as uow:
        visible_order(actor, uow.orders.find(order_id))
        return uow.orders.history(order_id)


# ---- changing orders ----------------------------------------------------------------------------


def update_status(
    actor: Actor,
    order_id: uuid.UUID,
    target: str,
    *,
    body_version: int | None = None,
    if_match: Collection[int] | None = None,
) -> Order:
    """Move the order to ``target`` as the transition table allows; the current status again is a no-op.

    Checks, in order: visible (404), role (403), ``If-Match`` (412), body ``version`` (409), the
    transition and its guards (409). The write is a compare-and-set on the version read, so a
    concurrent change is never overwritten: it answers 412 (If-Match given) or 409.
    """
    actor = with_request_id(actor)

    def stale(read_version: int) -> DomainError:
        with ReadOnlyUnitOfWork() as uow:
            current = uow.orders.current_version(order_id) or read_version
        if if_match is not None:
            return PreconditionFailed(f"The order changed meanwhile; it is at version {current}")
        return VersionConflict(current)

    def transaction(uow: UnitOfWork) -> Order:
        # SHIPPED and DELIVERED go through the shipments, which change under the order's row lock.
        fulfils = target in (SHIPPED, DELIVERED)
        order = visible_order(actor, uow.orders.lock(order_id) if fulfils else uow.orders.get(order_id))
        authorize_transition(order, target, actor)
        if if_match is not None and order.version not in if_match:
            raise PreconditionFailed(f"If-Match does not match the order's version {order.version}")
        if body_version is not None and body_version != order.version:
            raise VersionConflict(order.version)
        if not plan_transition(order, target, actor):
            return order
        read_version = order.version
        if actor.is_admin:
            uow.audit(
                actor,
                AuditAction.ORDER_STATUS_CHANGED,
                AuditResource.ORDER,
                order.id,
                diff({"status": order.status}, {"status": target}),
            )
        try:
            if target == CANCELLED:
                apply_cancellation(
                    uow, order_id, actor, cancel_reason_for(actor), expected_version=read_version
                )
            elif target == SHIPPED:
                # Every remaining unit as one shipment without tracking (SPEC §5.1).
                uow.orders.lock_payment(order_id)
                shipped = ship(
                    order,
                    None,
                    carrier=None,
                    tracking_number=None,
                    tracking_url=None,
                    actor=actor,
                    now=utcnow(),
                )
                uow.shipments.add(shipped.shipment)
                if shipped.change is not None:
                    uow.orders.add_history(shipped.change)
                uow.orders.save()
            elif target == DELIVERED:
                change = deliver_all(order, uow.shipments.for_order(order_id), actor=actor, now=utcnow())
                uow.orders.add_history(change)
                uow.orders.save()
            else:
                uow.orders.add_history(order.move_to(target, actor=actor, reason=None, now=utcnow()))
                uow.orders.save()
        except (StaleDataError, VersionConflict) as exc:
            uow.rollback()
            raise stale(read_version) from exc
        uow.commit()
        return order

    return run_in_transaction(transaction)


def delete_order(actor: Actor, order_id: uuid.UUID) -> None:
    """Hide an order (soft delete). PLACED is cancelled first, with everything that entails;
    CANCELLED is hidden as is; SHIPPED or DELIVERED cannot be deleted (InvalidTransition)."""
    actor = with_request_id(actor)

    def transaction(uow: UnitOfWork) -> None:
        order = visible_order(actor, uow.orders.lock(order_id))
        if order.deleted_at is not None:
            return  # an admin deleting it again: already hidden
        if order.status not in (PLACED, CANCELLED):
            raise InvalidTransition(f"An order in status {order.status} cannot be deleted")
        if actor.is_admin:
            before = {"status": order.status, "deleted": False}
            after = {"status": CANCELLED, "deleted": True}
            uow.audit(actor, AuditAction.ORDER_DELETED, AuditResource.ORDER, order.id, diff(before, after))
        if order.status == PLACED:
            apply_cancellation(uow, order_id, actor, cancel_reason_for(actor))
        order.deleted_at = utcnow()
        order.version += 1
        uow.orders.save()
        uow.commit()

    run_in_transaction(transaction)
