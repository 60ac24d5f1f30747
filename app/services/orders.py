"""Order use cases: cancel (shared with the payments worker and reconciliation), place, read, update."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from app.domain.actors import Actor
from app.domain.base import utcnow
from app.domain.errors import (
    DomainError,
    FeatureDisabled,
    Forbidden,
    IdempotencyInFlight,
    InvalidTransition,
    NotFound,
    PreconditionFailed,
    TotalChanged,
    ValidationFailed,
    VersionConflict,
)
from app.domain.orders import (
    CANCELLED,
    CANCELLED_BY_ADMIN,
    CANCELLED_BY_CUSTOMER,
    CANCELLED_BY_SYSTEM,
    PLACED,
    Order,
    OrderStatusChange,
    authorize_transition,
    plan_transition,
)
from app.log import current_request_id, get_logger
from app.repositories.carts import CartRepository
from app.repositories.catalogue import ProductRepository, StockLedgerRepository
from app.repositories.orders import IdempotencyRepository, OrderRepository
from app.repositories.transactions import begin_read, set_local_lock_timeout
from app.services import features
from app.services.transactions import retry_on_contention
from app.services.unit_of_work import UnitOfWork

log = get_logger(__name__)


def _with_request_id(actor: Actor) -> Actor:
    if actor.request_id:
        return actor
    return Actor(actor.user_id, actor.role, current_request_id())


def apply_cancellation(
    session: Session,
    order_id: uuid.UUID,
    actor: Actor,
    reason: str | None,
    *,
    expected_version: int | None = None,
) -> Order:
    """Cancel a PLACED order inside the caller's transaction; it does NOT commit.

    Locks the order row, then its payment, then its products (id order) — callers that lock an
    order and its payment themselves must take them in that order too. Already CANCELLED → the
    order unchanged; any other status but PLACED → ``InvalidTransition``. Stock returns through
    ``ORDER_RELEASE`` ledger rows; a PENDING payment becomes FAILED (``PAYMENT_TIMEOUT`` when that
    is the reason, else ``ORDER_CANCELLED``) so a queued charge never charges; a FAILED one is left
    alone; a COMPLETED one gets a ``RefundRequested`` event. Records ``OrderCancelled`` and a
    history row. ``expected_version``: raise ``VersionConflict`` if the locked order is at another
    version (the caller's compare-and-set).
    """
    orders = OrderRepository(session)
    order = orders.lock(order_id)
    if order is None:
        raise NotFound("The order was not found")
    if expected_version is not None and order.version != expected_version:
        raise VersionConflict(order.version)
    payment = orders.lock_payment(order_id)
    products = {}
    if order.status == PLACED:
        products = ProductRepository(session).lock_many(item.product_id for item in order.items)
    cancellation = order.cancel(
        payment=payment, products=products, actor=_with_request_id(actor), reason=reason, now=utcnow()
    )
    if cancellation is not None:
        StockLedgerRepository(session).add_all(cancellation.movements)
        orders.add_history(cancellation.change)
        session.flush()
    return order


# ---- placing an order (checkout) ----------------------------------------------------------------

# A checkout waits at most this long for a row lock before the attempt is retried (55P03).
CHECKOUT_LOCK_TIMEOUT_MS = 2000
IDEMPOTENCY_TTL = timedelta(hours=24)
# A claim this old without a response belongs to a request that died: another may take it over.
IDEMPOTENCY_ABANDONED_AFTER = timedelta(minutes=2)

Render = Callable[[Order], dict[str, Any]]


@dataclass(frozen=True)
class CheckoutRequest:
    user_id: uuid.UUID
    cart_id: uuid.UUID
    payment_method: str
    payment_token: str
    # The total the customer saw; None accepts whatever the current prices make.
    expected_total: Decimal | None = None


@dataclass(frozen=True)
class IdempotencyKeyUse:
    """The client's key and the hash of the request it came with (method, path, canonical body)."""

    key: str
    request_hash: str


@dataclass(frozen=True)
class CheckoutResult:
    order_id: uuid.UUID
    status: int
    body: dict[str, Any]
    replayed: bool = False


def _reject_foreign(actor: Actor, detail: str) -> DomainError:
    """Carts and checkout belong to their user alone: 403 for an admin, 404 (never reveal) otherwise."""
    if actor.is_admin:
        return Forbidden("Carts and checkout belong to their user alone")
    return NotFound(detail)


def place_order(
    session: Session,
    actor: Actor,
    request: CheckoutRequest,
    *,
    render: Render,
    currency: str,
    feature_ttl: float,
    idempotency: IdempotencyKeyUse | None = None,
) -> CheckoutResult:
    """Turn the user's cart into an order in one transaction (see ``_checkout``), at most once per key.

    ``render`` turns the new order into the response body; it runs inside the transaction so that
    the body remembered under the idempotency key is committed together with the order.
    """
    if request.user_id != actor.user_id:
        raise _reject_foreign(actor, "The user was not found")
    if not features.is_enabled(session, features.CHECKOUT, ttl=feature_ttl, user_id=request.user_id):
        session.rollback()
        raise FeatureDisabled("Checkout is temporarily disabled; retry later", retry_after=30)
    session.rollback()
    if idempotency is None:
        return _checkout(session, actor, request, render=render, currency=currency, idempotency=None)
    replay, claimed_at = _claim_or_replay(session, request.user_id, idempotency)
    if replay is not None:
        return replay
    try:
        return _checkout(session, actor, request, render=render, currency=currency, idempotency=idempotency)
    except BaseException:
        session.rollback()
        _release_claim(session, request.user_id, idempotency, claimed_at)
        raise


def _checkout(
    session: Session,
    actor: Actor,
    request: CheckoutRequest,
    *,
    render: Render,
    currency: str,
    idempotency: IdempotencyKeyUse | None,
) -> CheckoutResult:
    """Lock the cart, then its products in id order; check every line; reserve; write; empty the cart."""
    placer = _with_request_id(actor)

    def transaction() -> CheckoutResult:
        with UnitOfWork(session) as uow:
            set_local_lock_timeout(session, CHECKOUT_LOCK_TIMEOUT_MS)
            carts = CartRepository(session)
            cart_id = carts.lock_for_checkout(request.user_id)
            if cart_id is None or cart_id != request.cart_id:
                raise _reject_foreign(actor, "The cart was not found")
            lines = carts.lines(cart_id)
            if not lines:
                raise ValidationFailed("The cart is empty", {"cartId": ["The cart is empty."]})
            products = ProductRepository(session).lock_many(line.product_id for line in lines)
            placement = Order.place_from(
                user_id=request.user_id,
                lines=lines,
                products=products,
                now=utcnow(),
                currency=currency,
                payment_method=request.payment_method,
                payment_token=request.payment_token,
                actor=placer,
            )
            total = placement.order.total_amount
            if request.expected_total is not None and total != request.expected_total:
                raise TotalChanged(request.expected_total, total)
            # Plain INSERTs/UPDATEs rather than the ORM's flush: a quarter of a checkout's CPU.
            OrderRepository(session).insert_placement(placement)
            StockLedgerRepository(session).insert_all(placement.movements)
            ProductRepository(session).save_stock(products.values())
            carts.clear(cart_id)
            order_id = placement.order.id
            body = render(placement.order)
            if idempotency is not None:
                IdempotencyRepository(session).remember(
                    request.user_id, idempotency.key, status=201, body=body, order_id=order_id
                )
            uow.commit()
            return CheckoutResult(order_id=order_id, status=201, body=body)

    return retry_on_contention(session, transaction)


def _claim_or_replay(
    session: Session, user_id: uuid.UUID, use: IdempotencyKeyUse
) -> tuple[CheckoutResult | None, datetime]:
    """Claim the key in its own committed transaction, or answer from the first request.

    The (user, key) primary key decides between concurrent repeats: exactly one INSERT wins.
    """
    repo = IdempotencyRepository(session)
    for _ in range(5):
        now = utcnow()
        with UnitOfWork(session) as uow:
            if repo.claim(
                user_id,
                use.key,
                use.request_hash,
                now=now,
                expires_at=now + IDEMPOTENCY_TTL,
                abandoned_before=now - IDEMPOTENCY_ABANDONED_AFTER,
            ):
                uow.commit()
                return None, now
            row = repo.get(user_id, use.key)
            seen = (
                None
                if row is None
                else (row.request_hash, row.response_status, row.response_body, row.order_id)
            )
        if seen is None:
            continue  # the first request failed and freed the key just now: claim again
        request_hash, status, body, order_id = seen
        if request_hash != use.request_hash:
            raise ValidationFailed(
                "This Idempotency-Key was used with a different request",
                {"Idempotency-Key": ["Already used with a different request body."]},
            )
        if status is None or body is None or order_id is None:
            raise IdempotencyInFlight("A request with this Idempotency-Key is still in progress")
        return CheckoutResult(order_id=order_id, status=status, body=body, replayed=True), now
    raise IdempotencyInFlight("A request with this Idempotency-Key is still in progress")


def _release_claim(
    session: Session, user_id: uuid.UUID, use: IdempotencyKeyUse, claimed_at: datetime
) -> None:
    """A failed checkout changed nothing, so its key is free again. Best effort: an unreleased
    claim is taken over once abandoned (``IDEMPOTENCY_ABANDONED_AFTER``)."""
    try:
        with UnitOfWork(session) as uow:
            IdempotencyRepository(session).release(user_id, use.key, use.request_hash, claimed_at)
            uow.commit()
    except Exception as exc:
        log.warning("idempotency_release_failed", error=f"{type(exc).__name__}: {exc}")


def purge_expired_idempotency_keys(session: Session) -> int:
    """Delete idempotency keys past their 24 h (for the hourly purge job)."""
    with UnitOfWork(session) as uow:
        purged = IdempotencyRepository(session).purge_expired(utcnow())
        uow.commit()
    return purged


# ---- reading orders -----------------------------------------------------------------------------


def _visible(actor: Actor, order: Order | None) -> Order:
    """Owner or admin; a soft-deleted order is hidden from its owner (kept for admins and the books)."""
    if order is None or not actor.may_access(order.user_id):
        raise NotFound("The order was not found")
    if order.deleted_at is not None and not (actor.is_admin or actor.is_system):
        raise NotFound("The order was not found")
    return order


def get_order(session: Session, actor: Actor, order_id: uuid.UUID) -> Order:
    """The order with its items and payment (a fixed number of statements, however many lines)."""
    return _visible(actor, OrderRepository(session).get(order_id))


def read_order(session: Session, actor: Actor, order_id: uuid.UUID) -> Order:
    """``get_order`` for a request that only reads: its statements run without a transaction."""
    begin_read(session)
    return get_order(session, actor, order_id)


def list_orders(
    session: Session,
    actor: Actor,
    *,
    status: str | None,
    user_id: uuid.UUID | None,
    page: int,
    page_size: int,
) -> tuple[list[Order], int]:
    """Customers see their own orders; admins all of them (optionally one user's), deleted ones too."""
    if not (actor.is_admin or actor.is_system):
        if user_id is not None and user_id != actor.user_id:
            raise NotFound("The user was not found")
        user_id = actor.user_id
    begin_read(session)
    return OrderRepository(session).search(
        user_id=user_id,
        status=status,
        include_deleted=actor.is_admin or actor.is_system,
        page=page,
        page_size=page_size,
    )


def order_history(session: Session, actor: Actor, order_id: uuid.UUID) -> list[OrderStatusChange]:
    """Every status change of the order, oldest first (the first is its creation as PLACED)."""
    begin_read(session)
    repo = OrderRepository(session)
    _visible(actor, repo.find(order_id))
    return repo.history(order_id)


# ---- changing orders ----------------------------------------------------------------------------


def cancel_reason_for(actor: Actor) -> str:
    """Why an order is cancelled when someone asks for it (not the payments worker or the timeout)."""
    if actor.is_admin:
        return CANCELLED_BY_ADMIN
    if actor.is_system:
        return CANCELLED_BY_SYSTEM
    return CANCELLED_BY_CUSTOMER


def update_status(
    session: Session,
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
    actor = _with_request_id(actor)

    def stale(read_version: int) -> DomainError:
        session.rollback()
        current = OrderRepository(session).current_version(order_id) or read_version
        session.rollback()
        if if_match is not None:
            return PreconditionFailed(f"The order changed meanwhile; it is at version {current}")
        return VersionConflict(current)

    def transaction() -> Order:
        with UnitOfWork(session) as uow:
            repo = OrderRepository(session)
            order = _visible(actor, repo.get(order_id))
            authorize_transition(order, target, actor)
            if if_match is not None and order.version not in if_match:
                raise PreconditionFailed(f"If-Match does not match the order's version {order.version}")
            if body_version is not None and body_version != order.version:
                raise VersionConflict(order.version)
            if not plan_transition(order, target, actor):
                return order
            read_version = order.version
            try:
                if target == CANCELLED:
                    apply_cancellation(
                        session, order_id, actor, cancel_reason_for(actor), expected_version=read_version
                    )
                else:
                    repo.add_history(order.move_to(target, actor=actor, reason=None, now=utcnow()))
                    session.flush()
            except (StaleDataError, VersionConflict) as exc:
                raise stale(read_version) from exc
            uow.commit()
            return order

    return retry_on_contention(session, transaction)


def delete_order(session: Session, actor: Actor, order_id: uuid.UUID) -> None:
    """Hide an order (soft delete). PLACED is cancelled first, with everything that entails;
    CANCELLED is hidden as is; SHIPPED or DELIVERED cannot be deleted (InvalidTransition)."""
    actor = _with_request_id(actor)

    def transaction() -> None:
        with UnitOfWork(session) as uow:
            order = _visible(actor, OrderRepository(session).lock(order_id))
            if order.deleted_at is not None:
                return  # an admin deleting it again: already hidden
            if order.status not in (PLACED, CANCELLED):
                raise InvalidTransition(f"An order in status {order.status} cannot be deleted")
            if order.status == PLACED:
                apply_cancellation(session, order_id, actor, cancel_reason_for(actor))
            order.deleted_at = utcnow()
            order.version += 1
            session.flush()
            uow.commit()

    retry_on_contention(session, transaction)
