"""Payments: one per order, charged by the worker through the gateway."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Integer, Numeric, String, Text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.domain.base import Base, new_id, utcnow

PENDING = "PENDING"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
REFUNDED = "REFUNDED"
PAYMENT_STATUSES = (PENDING, COMPLETED, FAILED, REFUNDED)

CREDIT_CARD = "CREDIT_CARD"
DEBIT_CARD = "DEBIT_CARD"
PAYPAL = "PAYPAL"
PAYMENT_METHODS = (CREDIT_CARD, DEBIT_CARD, PAYPAL)


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("status IN ('PENDING', 'COMPLETED', 'FAILED', 'REFUNDED')", name="status"),
        CheckConstraint("method IN ('CREDIT_CARD', 'DEBIT_CARD', 'PAYPAL')", name="method"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=new_id)
    order_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("orders.id"), unique=True)
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    method: Mapped[str] = mapped_column(String(16), default=CREDIT_CARD)
    # The gateway's payment method id (e.g. pm_card_visa); not a card number.
    payment_token: Mapped[str] = mapped_column(String(255))
    gateway_reference: Mapped[str | None] = mapped_column(String(255))
    refund_reference: Mapped[str | None] = mapped_column(String(255))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


# ---- the payment's rules ------------------------------------------------------------------------

# ``failureReason`` values written when a cancellation voids a PENDING payment (see domain.orders).
VOIDED_BY_CANCELLATION = "ORDER_CANCELLED"
VOIDED_BY_TIMEOUT = "PAYMENT_TIMEOUT"
VOID_REASONS = (VOIDED_BY_CANCELLATION, VOIDED_BY_TIMEOUT)

# What a charge task does with a payment.
CHARGE = "CHARGE"
SKIP = "SKIP"

# Longest pause between two charge attempts. Kept below the sweep's "stale" age, so the sweep
# re-queues only charges whose task was lost, not ones waiting for their retry.
MAX_RETRY_DELAY_SECONDS = 60.0


def charge_step(payment: Payment, order_status: str) -> str:
    """Charge only a PENDING payment of a PLACED order; anything else was decided already."""
    return CHARGE if payment.status == PENDING and order_status == "PLACED" else SKIP


def refundable_reference(payment: Payment) -> str | None:
    """The charge to refund, if money was taken and not given back.

    A COMPLETED payment; or a voided (FAILED) one whose charge went through after the order was
    cancelled — the worker then records the charge's reference on the FAILED payment.
    """
    if payment.refund_reference is not None or payment.status not in (COMPLETED, FAILED):
        return None
    return payment.gateway_reference


def outcome_unknown(payment: Payment) -> bool:
    """Voided by a cancellation after a charge attempt whose answer never came (timeout, crash).

    The gateway may have charged it: the charge has to be looked up (by its ``paymentId``
    metadata) and refunded if it went through.
    """
    return (
        payment.status == FAILED
        and payment.failure_reason in VOID_REASONS
        and payment.attempts > 0
        and payment.gateway_reference is None
    )


def charge_retry_delay(
    attempts: int, max_attempts: int, base_seconds: float, rand: Callable[[], float] = random.random
) -> float | None:
    """Seconds before the next attempt (exponential backoff, full jitter); None once all are spent.

    ``attempts`` counts the attempts made so far (the first retry follows attempt 1).
    """
    if attempts >= max_attempts:
        return None
    ceiling = min(MAX_RETRY_DELAY_SECONDS, base_seconds * 2 ** max(attempts - 1, 0))
    return ceiling * rand()
