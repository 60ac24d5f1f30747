"""Queries over payments. Outcomes are recorded with conditional updates (``… WHERE status = …``)
so that a late or repeated worker never overwrites what a cancellation or another worker decided.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session, selectinload

from app.domain.base import utcnow
from app.domain.orders import CANCELLED, PLACED, Order
from app.domain.payments import (
    COMPLETED,
    FAILED,
    PARTIALLY_REFUNDED,
    PENDING,
    PROCESSING,
    R_PENDING,
    REQUIRES_ACTION,
    GatewayEvent,
    Payment,
    PaymentTransition,
    Refund,
)

# Keep the identity map in step with what the UPDATE really changed (RETURNING), never with a
# Python re-evaluation of the WHERE clause against possibly stale objects.
_FETCH = {"synchronize_session": "fetch"}


class PaymentRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, payment_id: uuid.UUID) -> Payment | None:
        stmt = select(Payment).where(Payment.id == payment_id).execution_options(populate_existing=True)
        return self.session.scalars(stmt).first()

    def order_of(self, payment: Payment) -> tuple[str, uuid.UUID] | None:
        """(status, user id) of the payment's order."""
        row = self.session.execute(
            select(Order.status, Order.user_id).where(Order.id == payment.order_id)
        ).first()
        return (row[0], row[1]) if row is not None else None

    def _update(self, payment_id: uuid.UUID, where: list[Any], **values: Any) -> bool:
        result = self.session.execute(
            update(Payment)
            .where(Payment.id == payment_id, *where)
            .values(updated_at=utcnow(), **values)
            .returning(Payment.id),
            execution_options=_FETCH,
        )
        return result.first() is not None

    def start_attempt(self, payment_id: uuid.UUID) -> int | None:
        """Count one more charge attempt of a PENDING payment; its number, or None if not PENDING."""
        result = self.session.execute(
            update(Payment)
            .where(Payment.id == payment_id, Payment.status == PENDING)
            .values(attempts=Payment.attempts + 1, updated_at=utcnow())
            .returning(Payment.attempts),
            execution_options=_FETCH,
        )
        return result.scalar_one_or_none()

    def first_receipt(self, event_id: str, event_type: str) -> bool:
        """Record a gateway event's id; False when it was recorded before (a repeated delivery)."""
        stmt = (
            pg_insert(GatewayEvent)
            .values(id=event_id, type=event_type, received_at=utcnow())
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(GatewayEvent.id)
        )
        return self.session.execute(stmt).first() is not None

    def store_intent(self, payment_id: uuid.UUID, intent_id: str) -> str | None:
        """Remember the payment's PaymentIntent (once: the first one stays); the payment's status
        afterwards, or None if there is no such payment."""
        stored = self.session.execute(
            update(Payment)
            .where(Payment.id == payment_id, Payment.intent_id.is_(None))
            .values(intent_id=intent_id, updated_at=utcnow())
            .returning(Payment.status),
            execution_options=_FETCH,
        ).scalar_one_or_none()
        if stored is not None:  # the usual case: one statement
            return str(stored)
        return self.session.scalar(select(Payment.status).where(Payment.id == payment_id))

    def apply(self, transition: PaymentTransition) -> bool:
        """Perform a transition the domain decided, as one guarded UPDATE; True when it applied
        (False: the payment was no longer in a state it applies to)."""
        where: list[Any] = [Payment.status.in_(transition.from_statuses)]
        if not transition.any_reference:
            if transition.reference_may_be is None:
                where.append(Payment.gateway_reference.is_(None))
            else:
                where.append(
                    Payment.gateway_reference.is_(None)
                    | (Payment.gateway_reference == transition.reference_may_be)
                )
        return self._update(transition.payment_id, where, **transition.values)

    def stale_pending(self, *, idle_since: datetime, max_attempts: int, limit: int) -> list[uuid.UUID]:
        """PENDING payments of PLACED orders with attempts left and no activity since ``idle_since``."""
        stmt = (
            select(Payment.id)
            .join(Order, Order.id == Payment.order_id)
            .where(
                # PENDING ones with attempts left are charged again; waiting ones are asked about.
                ((Payment.status == PENDING) & (Payment.attempts < max_attempts))
                | Payment.status.in_((REQUIRES_ACTION, PROCESSING)),
                Order.status == PLACED,
                Payment.updated_at < idle_since,
            )
            .order_by(Payment.updated_at)
            .limit(limit)
        )
        return list(self.session.scalars(stmt))

    def unrefunded_charges(self, *, idle_since: datetime, limit: int) -> list[uuid.UUID]:
        """Charges that must be given back and are not yet: a COMPLETED payment of a CANCELLED order,
        or a voided payment charged after all."""
        stmt = (
            select(Payment.id)
            .join(Order, Order.id == Payment.order_id)
            .where(
                ((Payment.status.in_((COMPLETED, PARTIALLY_REFUNDED))) & (Order.status == CANCELLED))
                | (
                    (Payment.status == FAILED)
                    & Payment.gateway_reference.is_not(None)
                    & Payment.refund_reference.is_(None)
                ),
                # Once a refund exists it is followed on its own (sent, polled); a FAILED one is
                # for the admins to decide, never retried here.
                ~exists().where(Refund.payment_id == Payment.id),
                # The order's last change counts too: a cancellation does not touch a COMPLETED payment.
                func.greatest(Payment.updated_at, Order.updated_at) < idle_since,
            )
            .order_by(Payment.updated_at)
            .limit(limit)
        )
        return list(self.session.scalars(stmt))

    # ---- refunds --------------------------------------------------------------------------------

    def lock(self, payment_id: uuid.UUID) -> Payment | None:
        """``SELECT … FOR UPDATE`` the payment (take its order's row lock first), with its refunds
        read afresh: every change of a refund holds this lock, so they cannot move meanwhile."""
        stmt = (
            select(Payment)
            .where(Payment.id == payment_id)
            .with_for_update(of=Payment)
            .options(selectinload(Payment.refunds))
            .execution_options(populate_existing=True)
        )
        return self.session.scalars(stmt).first()

    def flush(self) -> None:
        self.session.flush()

    def by_intent(self, intent_id: str) -> Payment | None:
        """The payment charged (or to be charged) through this PaymentIntent."""
        stmt = select(Payment).where(
            (Payment.intent_id == intent_id) | (Payment.gateway_reference == intent_id)
        )
        return self.session.scalars(stmt.limit(1)).first()

    def add_refund(self, refund: Refund) -> None:
        self.session.add(refund)
        self.session.flush([refund])

    def get_refund(self, refund_id: uuid.UUID) -> Refund | None:
        stmt = select(Refund).where(Refund.id == refund_id).execution_options(populate_existing=True)
        return self.session.scalars(stmt).first()

    def refund_by_reference(self, gateway_reference: str) -> Refund | None:
        stmt = select(Refund).where(Refund.gateway_reference == gateway_reference)
        return self.session.scalars(stmt.execution_options(populate_existing=True)).first()

    def start_refund_attempt(self, refund_id: uuid.UUID) -> int | None:
        """Count one more attempt to send a PENDING refund not yet known to the gateway."""
        result = self.session.execute(
            update(Refund)
            .where(Refund.id == refund_id, Refund.status == R_PENDING, Refund.gateway_reference.is_(None))
            .values(attempts=Refund.attempts + 1, updated_at=utcnow())
            .returning(Refund.attempts),
            execution_options=_FETCH,
        )
        return result.scalar_one_or_none()

    def stale_refunds(self, *, idle_since: datetime, limit: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
        """(payment id, refund id) of PENDING refunds untouched since ``idle_since``: to send again
        (no gateway reference yet; the key makes it safe) or to ask the gateway about."""
        stmt = (
            select(Refund.payment_id, Refund.id)
            .where(Refund.status == R_PENDING, Refund.updated_at < idle_since)
            .order_by(Refund.updated_at)
            .limit(limit)
        )
        return [(row[0], row[1]) for row in self.session.execute(stmt)]
