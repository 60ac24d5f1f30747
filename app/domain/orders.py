"""Orders, their lines, their status trail and the idempotency keys of checkout.

The rules live here: the status transitions as a declarative table, the cancellation (stock
returned through the ledger, payment voided or refund requested) and the factory that turns a
cart into an order (``Order.place_from``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.domain import payments as pay
from app.domain.actors import Actor
from app.domain.base import Base, new_id, utcnow
from app.domain.catalogue import (
    REASON_ORDER_RELEASE,
    REASON_ORDER_RESERVE,
    Product,
    StockMovement,
    change_stock,
)
from app.domain.errors import Forbidden, InsufficientStock, InvalidTransition, NotFound, ValidationFailed
from app.domain.events import OrderCancelled, OrderPlaced, RefundRequested


class OrderStatus(StrEnum):
    PLACED = "PLACED"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"
    CANCELLED = "CANCELLED"


class CancelReason(StrEnum):
    """``cancel_reason`` values (also the ``reason`` of the CANCELLED history row)."""

    CANCELLED_BY_CUSTOMER = "CANCELLED_BY_CUSTOMER"  # the owner asked (PUT status CANCELLED or DELETE)
    CANCELLED_BY_ADMIN = "CANCELLED_BY_ADMIN"  # an admin asked (PUT status CANCELLED or DELETE)
    CANCELLED_BY_SYSTEM = "CANCELLED_BY_SYSTEM"  # a system actor asked without a more precise reason
    PAYMENT_FAILED = "PAYMENT_FAILED"  # the gateway declined the charge (payments worker)
    PAYMENT_TIMEOUT = "PAYMENT_TIMEOUT"  # still PENDING after PAYMENT_PENDING_TIMEOUT_SECONDS
    PAYMENT_REFUNDED = "PAYMENT_REFUNDED"  # an admin refunded the payment of a PLACED order


# Module-level names for the members, as the rest of the code spells them.
PLACED, SHIPPED, DELIVERED, CANCELLED = OrderStatus
ORDER_STATUSES = tuple(OrderStatus)
CANCELLED_BY_CUSTOMER = CancelReason.CANCELLED_BY_CUSTOMER
CANCELLED_BY_ADMIN = CancelReason.CANCELLED_BY_ADMIN
CANCELLED_BY_SYSTEM = CancelReason.CANCELLED_BY_SYSTEM
PAYMENT_FAILED = CancelReason.PAYMENT_FAILED
PAYMENT_TIMEOUT = CancelReason.PAYMENT_TIMEOUT
PAYMENT_REFUNDED = CancelReason.PAYMENT_REFUNDED
CANCEL_REASONS = tuple(CancelReason)

# Roles in the transition table: ``owner`` is the customer whose order it is.
ROLE_OWNER = "owner"
ROLE_ADMIN = "admin"
ROLE_SYSTEM = "system"


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("status IN ('PLACED', 'SHIPPED', 'DELIVERED', 'CANCELLED')", name="status"),
        CheckConstraint("version >= 1", name="version_positive"),
        Index("ix_orders_user_id_order_date", "user_id", "order_date"),
        Index("ix_orders_status", "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(16), default=PLACED)
    order_date: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    total_amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    currency: Mapped[str] = mapped_column(String(3))
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    cancel_reason: Mapped[str | None] = mapped_column(String(64))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A declined order waits for another payment attempt until then (PAYMENT_RETRY_WINDOW_SECONDS).
    payment_due_by: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    # Where the order goes: a snapshot of ``{line1, line2?, city, postalCode, country}`` taken at
    # checkout, so later profile changes or an erasure of the user leave it as it was (SPEC §5.1).
    # None only for orders placed before release 2.
    shipping_address: Mapped[dict[str, Any] | None] = mapped_column(JSONB)

    # Every ORM UPDATE of an order is a compare-and-set: ``… WHERE version = <the version read>``
    # (StaleDataError when someone else changed it first). The version is bumped explicitly.
    __mapper_args__ = {"version_id_col": version, "version_id_generator": False}

    items: Mapped[list[OrderItem]] = relationship(
        "OrderItem", order_by="OrderItem.product_id", cascade="all, delete-orphan", passive_deletes=True
    )
    payment: Mapped[pay.Payment | None] = relationship("Payment", uselist=False, viewonly=False)

    @classmethod
    def place_from(
        cls,
        *,
        user_id: uuid.UUID,
        lines: Sequence[CartLine],
        products: Mapping[uuid.UUID, Product],
        now: datetime,
        currency: str,
        payment_method: str,
        payment_token: str,
        actor: Actor,
        shipping_address: Mapping[str, Any] | None = None,
    ) -> Placement:
        """The factory: cart lines + locked products → order, items, payment, ledger rows, event.

        Every line is checked before anything changes, so a short line leaves stock untouched and
        ``InsufficientStock`` lists every short line.
        """
        if not lines:
            raise ValidationFailed("The cart is empty", {"cartId": ["The cart is empty."]})
        shortages = []
        for line in lines:
            product = products.get(line.product_id)
            available = product.stock if product is not None else 0
            if line.quantity > available:
                shortages.append(
                    {"productId": str(line.product_id), "requested": line.quantity, "available": available}
                )
        if shortages:
            raise InsufficientStock(shortages)

        order = cls(
            id=new_id(),
            user_id=user_id,
            status=PLACED,
            order_date=now,
            currency=currency,
            version=1,
            updated_at=now,
            shipping_address=dict(shipping_address) if shipping_address is not None else None,
        )
        movements: list[StockMovement] = []
        total = Decimal("0.00")
        for line in sorted(lines, key=lambda ln: ln.product_id):
            product = products[line.product_id]
            subtotal = product.price * line.quantity
            total += subtotal
            order.items.append(
                OrderItem(
                    order_id=order.id,
                    product_id=product.id,
                    product_name=product.name,
                    quantity=line.quantity,
                    unit_price=product.price,
                    line_total=subtotal,
                    quantity_shipped=0,
                    quantity_returned=0,
                )
            )
            movements.append(
                change_stock(
                    product, -line.quantity, REASON_ORDER_RESERVE, order_id=order.id, actor_id=actor.user_id
                )
            )
        order.total_amount = total
        order.payment = pay.Payment(
            id=new_id(),
            order_id=order.id,
            amount=total,
            currency=currency,
            status=pay.PENDING,
            method=payment_method,
            payment_token=payment_token,
            attempts=0,
            charge_round=1,
            created_at=now,
            updated_at=now,
        )
        history = OrderStatusChange(
            id=new_id(),
            order_id=order.id,
            from_status=None,
            to_status=PLACED,
            actor=actor.label,
            reason=None,
            request_id=actor.request_id,
            at=now,
        )
        order.events.append(
            OrderPlaced(order_id=str(order.id), user_id=str(user_id), payment_id=str(order.payment.id))
        )
        return Placement(order=order, movements=movements, history=history)

    def move_to(self, target: str, *, actor: Actor, reason: str | None, now: datetime) -> OrderStatusChange:
        """Record a transition already allowed by ``plan_transition``: status, version, trail, event."""
        change = OrderStatusChange(
            id=new_id(),
            order_id=self.id,
            from_status=self.status,
            to_status=target,
            actor=actor.label,
            reason=reason,
            request_id=actor.request_id,
            at=now,
        )
        self.status = target
        self.version += 1
        self.updated_at = now
        # SHIPPED and DELIVERED follow the shipments (``app.domain.fulfilment``), which record
        # ``OrderShipped`` per shipment and ``OrderDelivered`` for the last delivery.
        if target == CANCELLED:
            self.cancel_reason = reason
            self.events.append(
                OrderCancelled(order_id=str(self.id), user_id=str(self.user_id), reason=reason)
            )
        return change

    def cancel(
        self,
        *,
        payment: pay.Payment | None,
        products: Mapping[uuid.UUID, Product],
        actor: Actor,
        reason: str | None,
        now: datetime,
    ) -> Cancellation | None:
        """Cancel a PLACED order: stock back through the ledger, payment voided or refund requested.

        ``None`` when it is already CANCELLED (nothing changes); any other status is an
        ``InvalidTransition``. ``products`` are the order's products, locked by the caller.
        """
        if self.status == CANCELLED:
            return None
        if self.status != PLACED:
            raise InvalidTransition(f"An order in status {self.status} cannot be cancelled")
        if self.units_shipped:
            raise InvalidTransition("Part of the order has shipped: units have left, it cannot be cancelled")
        movements = [
            change_stock(
                products[item.product_id],
                item.quantity,
                REASON_ORDER_RELEASE,
                order_id=self.id,
                actor_id=actor.user_id,
            )
            for item in sorted(self.items, key=lambda i: i.product_id)
        ]
        if payment is not None:
            if payment.status in pay.OPEN:
                # The charge task checks the status first, so a queued charge never runs now.
                payment.status = pay.FAILED
                payment.failure_reason = (
                    pay.VoidReason.PAYMENT_TIMEOUT
                    if reason == PAYMENT_TIMEOUT
                    else pay.VoidReason.ORDER_CANCELLED
                )
                payment.updated_at = now
            elif payment.status in (pay.COMPLETED, pay.PARTIALLY_REFUNDED):
                self.events.append(
                    RefundRequested(
                        order_id=str(self.id), user_id=str(self.user_id), payment_id=str(payment.id)
                    )
                )
        change = self.move_to(CANCELLED, actor=actor, reason=reason, now=now)
        return Cancellation(change=change, movements=movements)

    @property
    def units_shipped(self) -> int:
        return units_shipped(self.items)

    def remaining_to_ship(self) -> dict[uuid.UUID, int]:
        """Units of each product not shipped yet (0 for a fully shipped line)."""
        return {item.product_id: item.quantity - (item.quantity_shipped or 0) for item in self.items}

    @property
    def fulfillment_status(self) -> str:
        return fulfillment_status(self.status, self.items)

    @property
    def allowed_transitions(self) -> list[str] | None:
        """What ``allowedTransitions`` shows: set by ``view_for`` for the caller who reads it."""
        return self.__dict__.get("_allowed_transitions")  # type: ignore[no-any-return]

    def view_for(self, actor: Actor) -> Order:
        """Remember which statuses this caller may ``PUT`` now (``allowedTransitions``)."""
        self.__dict__["_allowed_transitions"] = allowed_transitions(self, actor)
        return self


class FulfillmentStatus(StrEnum):
    UNFULFILLED = "UNFULFILLED"
    PARTIALLY_SHIPPED = "PARTIALLY_SHIPPED"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"


FULFILLMENT_STATUSES = tuple(FulfillmentStatus)


class ShippableLine(Protocol):
    @property
    def quantity(self) -> int: ...
    @property
    def quantity_shipped(self) -> int | None: ...


def units_shipped(lines: Iterable[ShippableLine]) -> int:
    return sum(line.quantity_shipped or 0 for line in lines)


def fulfillment_status(status: str, lines: Sequence[ShippableLine]) -> str:
    """UNFULFILLED, PARTIALLY_SHIPPED, SHIPPED (every unit shipped) or DELIVERED (every shipment
    delivered). Orders shipped before shipments existed follow their status."""
    if status in (SHIPPED, DELIVERED):
        return str(status)
    if units_shipped(lines) == 0:
        return FulfillmentStatus.UNFULFILLED
    if all((line.quantity_shipped or 0) >= line.quantity for line in lines):
        return FulfillmentStatus.SHIPPED
    return FulfillmentStatus.PARTIALLY_SHIPPED


class OrderItem(Base):
    __tablename__ = "order_items"
    __table_args__ = (CheckConstraint("quantity BETWEEN 1 AND 1000", name="quantity_range"),)

    order_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True
    )
    product_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("products.id"), primary_key=True
    )
    product_name: Mapped[str] = mapped_column(String(200))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    line_total: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    # Units that left in shipments, and units back through RECEIVED or REFUNDED returns; both change
    # only under the order's row lock (app.domain.fulfilment, app.domain.returns).
    quantity_shipped: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    quantity_returned: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class OrderStatusChange(Base):
    """The audit trail of an order: every transition with its actor, reason and request id."""

    __tablename__ = "order_status_history"
    __table_args__ = (Index("ix_order_status_history_order_id_at", "order_id", "at"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=new_id)
    order_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("orders.id", ondelete="CASCADE")
    )
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class IdempotencyKey(Base):
    """A checkout request remembered under (user, key) for 24 h; the primary key is the guard."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_keys_expires_at", "expires_at"),)

    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    response_status: Mapped[int | None] = mapped_column(SmallInteger)
    response_body: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    order_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class CartLine:
    product_id: uuid.UUID
    quantity: int


@dataclass
class Placement:
    """What placing an order creates besides the order (items and payment hang off the order)."""

    order: Order
    movements: list[StockMovement]
    history: OrderStatusChange


@dataclass
class Cancellation:
    change: OrderStatusChange
    movements: list[StockMovement] = field(default_factory=list)


# ---- reading an order ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderLineView:
    product_id: uuid.UUID
    product_name: str
    quantity: int
    unit_price: Decimal
    line_total: Decimal
    quantity_shipped: int
    quantity_returned: int


@dataclass(frozen=True, slots=True)
class OrderPaymentView:
    id: uuid.UUID
    status: str
    method: str
    amount: Decimal


@dataclass(slots=True)
class OrderView:
    """An order as it is read (``GET /orders/{id}``): plain values from its rows, outside any
    session. The rules that decide what the entity shows decide it here too (``visible_order``,
    ``fulfillment_status``, ``allowed_transitions``)."""

    id: uuid.UUID
    user_id: uuid.UUID
    status: str
    order_date: datetime
    total_amount: Decimal
    currency: str
    version: int
    cancel_reason: str | None
    deleted_at: datetime | None
    payment_due_by: datetime | None
    shipping_address: dict[str, Any] | None
    items: list[OrderLineView]
    payment: OrderPaymentView | None
    allowed_transitions: list[str] | None = None

    @property
    def units_shipped(self) -> int:
        return units_shipped(self.items)

    @property
    def fulfillment_status(self) -> str:
        return fulfillment_status(self.status, self.items)

    def view_for(self, actor: Actor) -> OrderView:
        """Remember which statuses this caller may ``PUT`` now (``allowedTransitions``)."""
        self.allowed_transitions = allowed_transitions(self, actor)
        return self


class OrderFacts(Protocol):
    """What the transition rules read of an order: the entity and its read model alike."""

    @property
    def status(self) -> str: ...
    @property
    def user_id(self) -> uuid.UUID: ...
    @property
    def payment(self) -> PaymentFacts | None: ...
    @property
    def units_shipped(self) -> int: ...


class PaymentFacts(Protocol):
    @property
    def status(self) -> str: ...


class Visible(Protocol):
    @property
    def user_id(self) -> uuid.UUID: ...
    @property
    def deleted_at(self) -> datetime | None: ...


# ---- the status transitions -------------------------------------------------------------------

Guard = Callable[[OrderFacts], str | None]


def _payment_completed(order: OrderFacts) -> str | None:
    # A partly refunded payment was completed first: the rest of the order may still ship.
    if order.payment is None or order.payment.status not in (pay.COMPLETED, pay.PARTIALLY_REFUNDED):
        return "An order can only be shipped once its payment is COMPLETED"
    return None


def _nothing_shipped(order: OrderFacts) -> str | None:
    if order.units_shipped:
        return "Part of the order has shipped: units have left, it cannot be cancelled"
    return None


@dataclass(frozen=True)
class Transition:
    roles: frozenset[str]
    guards: tuple[Guard, ...] = ()


# (from, to) → who may do it and what must hold. Anything not listed is a 409.
TRANSITIONS: dict[tuple[str, str], Transition] = {
    (PLACED, SHIPPED): Transition(frozenset({ROLE_ADMIN, ROLE_SYSTEM}), (_payment_completed,)),
    (SHIPPED, DELIVERED): Transition(frozenset({ROLE_ADMIN, ROLE_SYSTEM})),
    (PLACED, CANCELLED): Transition(frozenset({ROLE_OWNER, ROLE_ADMIN, ROLE_SYSTEM}), (_nothing_shipped,)),
}


def roles_of(actor: Actor, order: OrderFacts) -> frozenset[str]:
    roles = set()
    if actor.is_admin:
        roles.add(ROLE_ADMIN)
    if actor.is_system:
        roles.add(ROLE_SYSTEM)
    if actor.user_id is not None and actor.user_id == order.user_id:
        roles.add(ROLE_OWNER)
    return frozenset(roles)


def authorize_transition(order: Order, target: str, actor: Actor) -> None:
    """Forbidden unless the actor holds a role that may move some order to ``target``."""
    if target not in ORDER_STATUSES:
        raise ValidationFailed("Unknown status", {"status": [f"Must be one of {', '.join(ORDER_STATUSES)}."]})
    allowed = frozenset().union(*(t.roles for (_, to), t in TRANSITIONS.items() if to == target))
    if allowed and not roles_of(actor, order) & allowed:
        raise Forbidden(f"Only {' or '.join(sorted(allowed - {ROLE_SYSTEM}))} may set status {target}")


def plan_transition(order: Order, target: str, actor: Actor) -> bool:
    """Decide a requested status change: True to apply it, False when it is the current status.

    The role is checked before the state (a customer asking SHIPPED gets Forbidden even where
    the state alone would be a conflict); then the (from, to) pair and its guards.
    """
    authorize_transition(order, target, actor)
    if target == order.status:
        return False
    transition = TRANSITIONS.get((order.status, target))
    if transition is None:
        raise InvalidTransition(f"An order cannot go from {order.status} to {target}")
    for guard in transition.guards:
        problem = guard(order)
        if problem:
            raise InvalidTransition(problem)
    return True


def allowed_transitions(order: OrderFacts, actor: Actor) -> list[str]:
    """The statuses other than the current one that this actor may ``PUT`` now (SPEC §5.1)."""
    roles = roles_of(actor, order)
    allowed = []
    for target in ORDER_STATUSES:
        transition = TRANSITIONS.get((order.status, target))
        if transition is None or not roles & transition.roles:
            continue
        if any(guard(order) for guard in transition.guards):
            continue
        allowed.append(str(target))
    return allowed


V = TypeVar("V", bound=Visible)


def visible_order(actor: Actor, order: V | None) -> V:
    """Owner or staff; a soft-deleted order is hidden from its owner (kept for admins and the books).

    ``NotFound`` otherwise: another user's order is never revealed.
    """
    if order is None or not actor.may_access(order.user_id):
        raise NotFound("The order was not found")
    if order.deleted_at is not None and not actor.is_staff:
        raise NotFound("The order was not found")
    return order


def cancel_reason_for(actor: Actor) -> str:
    """Why an order is cancelled when someone asks for it (not the payments worker or the timeout)."""
    if actor.is_admin:
        return CANCELLED_BY_ADMIN
    if actor.is_system:
        return CANCELLED_BY_SYSTEM
    return CANCELLED_BY_CUSTOMER
