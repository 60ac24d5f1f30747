"""Queries over orders, their items, payments, status trail and checkout idempotency keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, and_, bindparam, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, joinedload, selectinload

from app.domain.orders import (
    IdempotencyKey,
    Order,
    OrderItem,
    OrderLineView,
    OrderPaymentView,
    OrderStatusChange,
    OrderView,
    Placement,
)
from app.domain.payments import Payment
from app.repositories.rows import insert_rows, table_of

_ORDER_BY_ID = (
    select(Order)
    .where(Order.id == bindparam("order_id"))
    .options(joinedload(Order.items), joinedload(Order.payment))
    .execution_options(populate_existing=True)
)


_LOCK_ROW = select(Order.id).where(Order.id == bindparam("order_id")).with_for_update()


class OrderRepository:
    """Orders are the aggregates that record events: every order handed out is in ``seen``, where
    the unit of work collects the events on commit."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.seen: list[Order] = []

    def _seen(self, order: Order | None) -> Order | None:
        if order is not None:
            self.seen.append(order)
        return order

    def add(self, order: Order) -> None:
        self.session.add(order)
        self.seen.append(order)

    def insert_placement(self, placement: Placement) -> None:
        """Write a new order, its items, payment and first history row with plain INSERTs (the
        checkout's hot path; the entities stay out of the session)."""
        order = placement.order
        self.seen.append(order)
        insert_rows(self.session, [order])
        insert_rows(self.session, order.items)
        if order.payment is not None:
            insert_rows(self.session, [order.payment])
        insert_rows(self.session, [placement.history])

    def add_history(self, change: OrderStatusChange) -> None:
        self.session.add(change)

    def save(self) -> None:
        """Write the changes of the orders handed out now: the UPDATE is a compare-and-set on the
        version read (``version_id_col``), so a concurrent change raises ``StaleDataError`` here."""
        self.session.flush()

    def find(self, order_id: uuid.UUID) -> Order | None:
        """The order row alone (no items, no payment)."""
        return self._seen(self.session.get(Order, order_id))

    def get(self, order_id: uuid.UUID) -> Order | None:
        """The order with its items and payment, joined: one statement, whatever the size.

        (``selectinload`` built two more statements per call, the main cost of ``GET /orders/{id}``:
        docs/bench/README.md, fix 4.)
        """
        return self._seen(self.session.scalars(_ORDER_BY_ID, {"order_id": order_id}).unique().first())

    def lock(self, order_id: uuid.UUID) -> Order | None:
        """``SELECT … FOR UPDATE`` the order row (its items and payment are loaded, not locked)."""
        stmt = (
            select(Order)
            .where(Order.id == order_id)
            .with_for_update(of=Order)
            .options(selectinload(Order.items), selectinload(Order.payment))
            .execution_options(populate_existing=True)
        )
        return self._seen(self.session.scalars(stmt).first())

    def lock_row(self, order_id: uuid.UUID) -> bool:
        """``SELECT … FOR UPDATE`` the order row only, loading nothing (to serialise with a
        cancellation, which locks the order first too). False when there is no such order."""
        return self.session.execute(_LOCK_ROW, {"order_id": order_id}).first() is not None

    def lock_payment(self, order_id: uuid.UUID) -> Payment | None:
        stmt = (
            select(Payment)
            .where(Payment.order_id == order_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return self.session.scalars(stmt).first()

    def current_version(self, order_id: uuid.UUID) -> int | None:
        return self.session.scalar(select(Order.version).where(Order.id == order_id))

    def history(self, order_id: uuid.UUID) -> list[OrderStatusChange]:
        stmt = (
            select(OrderStatusChange)
            .where(OrderStatusChange.order_id == order_id)
            .order_by(OrderStatusChange.at, OrderStatusChange.id)
        )
        return list(self.session.scalars(stmt))

    def search(
        self,
        *,
        user_id: uuid.UUID | None,
        status: str | None,
        include_deleted: bool,
        page: int,
        page_size: int,
    ) -> tuple[list[Order], int]:
        """A page of orders, newest first, with items and payments (a fixed number of statements)."""
        conditions = []
        if user_id is not None:
            conditions.append(Order.user_id == user_id)
        if status is not None:
            conditions.append(Order.status == status)
        if not include_deleted:
            conditions.append(Order.deleted_at.is_(None))
        where = and_(*conditions) if conditions else and_(True)
        total = self.session.scalar(select(func.count()).select_from(Order).where(where)) or 0
        stmt = (
            select(Order)
            .where(where)
            .order_by(Order.order_date.desc(), Order.id.desc())
            .limit(page_size)
            .offset((page - 1) * page_size)
            .options(selectinload(Order.items), selectinload(Order.payment))
        )
        orders = list(self.session.scalars(stmt))
        self.seen.extend(orders)
        return orders, int(total)


_orders, _items, _payments = Order.__table__.c, OrderItem.__table__.c, Payment.__table__.c
# The order, its payment and its lines in one statement (one row per line), only the columns a
# reader is shown or the rules read.
_ORDER_VIEW = (
    select(
        _orders.id,
        _orders.user_id,
        _orders.status,
        _orders.order_date,
        _orders.total_amount,
        _orders.currency,
        _orders.version,
        _orders.cancel_reason,
        _orders.deleted_at,
        _orders.payment_due_by,
        _orders.shipping_address,
        _payments.id.label("payment_id"),
        _payments.status.label("payment_status"),
        _payments.method.label("payment_method"),
        _payments.amount.label("payment_amount"),
        _items.product_id,
        _items.product_name,
        _items.quantity,
        _items.unit_price,
        _items.line_total,
        _items.quantity_shipped,
        _items.quantity_returned,
    )
    .select_from(
        Order.__table__.outerjoin(Payment.__table__, _payments.order_id == _orders.id).outerjoin(
            OrderItem.__table__, _items.order_id == _orders.id
        )
    )
    .where(_orders.id == bindparam("order_id"))
    .order_by(_items.product_id)
)


class OrderReads:
    """Orders as they are read: Core rows straight into ``OrderView``, no session, no identity map
    (the ORM's loading was most of a ``GET /orders/{id}``'s own CPU: docs/bench/README.md)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def get(self, order_id: uuid.UUID) -> OrderView | None:
        """The order with its lines and payment: one statement, whatever the size."""
        rows = self.connection.execute(_ORDER_VIEW, {"order_id": order_id}).all()
        if not rows:
            return None
        order = rows[0]
        payment = None
        if order.payment_id is not None:
            payment = OrderPaymentView(
                order.payment_id, order.payment_status, order.payment_method, order.payment_amount
            )
        return OrderView(
            id=order.id,
            user_id=order.user_id,
            status=order.status,
            order_date=order.order_date,
            total_amount=order.total_amount,
            currency=order.currency,
            version=order.version,
            cancel_reason=order.cancel_reason,
            deleted_at=order.deleted_at,
            payment_due_by=order.payment_due_by,
            shipping_address=order.shipping_address,
            items=[
                OrderLineView(
                    line.product_id,
                    line.product_name,
                    line.quantity,
                    line.unit_price,
                    line.line_total,
                    line.quantity_shipped,
                    line.quantity_returned,
                )
                for line in rows
                if line.product_id is not None
            ],
            payment=payment,
        )


# SQLAlchemy cannot cache the compiled form of a PostgreSQL ``INSERT … ON CONFLICT`` construct
# (its ``Insert`` sets ``inherit_cache = False``), so building it per request recompiled it every
# time (docs/bench/README.md, fix 2). As text it is compiled once.
_CLAIM = text(
    """
    INSERT INTO idempotency_keys AS k
        (user_id, key, request_hash, created_at, expires_at, response_status, response_body, order_id)
    VALUES (:user_id, :key, :request_hash, :now, :expires_at, NULL, NULL, NULL)
    ON CONFLICT (user_id, key) DO UPDATE
    SET request_hash = excluded.request_hash, created_at = excluded.created_at,
        expires_at = excluded.expires_at, response_status = NULL, response_body = NULL, order_id = NULL
    WHERE k.expires_at <= :now OR (k.response_status IS NULL AND k.created_at < :abandoned_before)
    RETURNING k.key
    """
).bindparams(
    bindparam("user_id", type_=UUID(as_uuid=True)),
    bindparam("now", type_=DateTime(timezone=True)),
    bindparam("expires_at", type_=DateTime(timezone=True)),
    bindparam("abandoned_before", type_=DateTime(timezone=True)),
)


_KEYS = table_of(IdempotencyKey)
_REMEMBER = (
    update(_KEYS)
    .where(_KEYS.c.user_id == bindparam("scope"), _KEYS.c.key == bindparam("key_"))
    .values(
        response_status=bindparam("status"),
        response_body=bindparam("body"),
        order_id=bindparam("resource_id"),
    )
)


class IdempotencyRepository:
    """The (user, key) primary key is the guard: one claim per key, however many repeat at once."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def claim(
        self,
        user_id: uuid.UUID,
        key: str,
        request_hash: str,
        *,
        now: datetime,
        expires_at: datetime,
        abandoned_before: datetime,
    ) -> bool:
        """Insert the in-flight claim; or take over an expired or abandoned one. True when ours."""
        row = self.session.execute(
            _CLAIM,
            {
                "user_id": user_id,
                "key": key,
                "request_hash": request_hash,
                "now": now,
                "expires_at": expires_at,
                "abandoned_before": abandoned_before,
            },
        ).first()
        return row is not None

    def get(self, user_id: uuid.UUID, key: str) -> IdempotencyKey | None:
        stmt = (
            select(IdempotencyKey)
            .where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key)
            .execution_options(populate_existing=True)
        )
        return self.session.scalars(stmt).first()

    def remember(
        self, user_id: uuid.UUID, key: str, *, status: int, body: dict[str, Any], order_id: uuid.UUID
    ) -> None:
        self.session.execute(
            _REMEMBER,
            {"scope": user_id, "key_": key, "status": status, "body": body, "resource_id": order_id},
        )

    def release(self, user_id: uuid.UUID, key: str, request_hash: str, claimed_at: datetime) -> None:
        """Free a claim whose request failed: only our own, still unanswered claim."""
        self.session.execute(
            delete(IdempotencyKey)
            .where(
                IdempotencyKey.user_id == user_id,
                IdempotencyKey.key == key,
                IdempotencyKey.request_hash == request_hash,
                IdempotencyKey.created_at == claimed_at,
                IdempotencyKey.response_status.is_(None),
            )
            .execution_options(synchronize_session=False)
        )

    def purge_expired(self, now: datetime) -> int:
        result = self.session.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at <= now))
        return int(result.rowcount)  # type: ignore[attr-defined]
