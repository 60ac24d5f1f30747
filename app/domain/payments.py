"""Payments: one per order, charged by the worker through the gateway."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Integer, Numeric, String, Text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.domain.backoff import backoff_delay
from app.domain.base import Base, new_id, utcnow
from app.domain.events import Event, PaymentCompleted, PaymentFailed, PaymentRefunded, RefundRequested


class PaymentStatus(StrEnum):
    PENDING = "PENDING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    REFUNDED = "REFUNDED"


class PaymentMethod(StrEnum):
    CREDIT_CARD = "CREDIT_CARD"
    DEBIT_CARD = "DEBIT_CARD"
    PAYPAL = "PAYPAL"


class VoidReason(StrEnum):
    """``failureReason`` of a PENDING payment voided by its order's cancellation."""

    ORDER_CANCELLED = "ORDER_CANCELLED"  # the order was cancelled (by anyone, for any other reason)
    PAYMENT_TIMEOUT = "PAYMENT_TIMEOUT"  # the order expired with its payment still PENDING


# Module-level names for the members, as the rest of the code spells them.
PENDING, COMPLETED, FAILED, REFUNDED = PaymentStatus
PAYMENT_STATUSES = tuple(PaymentStatus)
CREDIT_CARD, DEBIT_CARD, PAYPAL = PaymentMethod
PAYMENT_METHODS = tuple(PaymentMethod)


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
    # The PaymentIntent created (and stored) before it is confirmed: a void cancels it, so a
    # confirm that arrives after the void is refused by the gateway.
    intent_id: Mapped[str | None] = mapped_column(String(255))
    gateway_reference: Mapped[str | None] = mapped_column(String(255))
    refund_reference: Mapped[str | None] = mapped_column(String(255))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class GatewayEvent(Base):
    """A webhook event of the gateway already processed: each event id is handled once."""

    __tablename__ = "gateway_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# What a webhook event does to the payment it names (``metadata.paymentId``); anything else is
# acknowledged and ignored (the sweep and the worker's own calls still converge).
INTENT_SUCCEEDED = "payment_intent.succeeded"
INTENT_FAILED = "payment_intent.payment_failed"
HANDLED_EVENT_TYPES = (INTENT_SUCCEEDED, INTENT_FAILED)


# ---- the payment's rules ------------------------------------------------------------------------

VOID_REASONS = tuple(VoidReason)

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


def intent_to_void(payment: Payment) -> str | None:
    """The PaymentIntent to cancel at the gateway for a payment voided with its outcome unknown:
    cancelling it closes the race with a confirm still in flight (a confirm after the cancel is
    refused; a confirm that won the race is refunded)."""
    return payment.intent_id if outcome_unknown(payment) else None


def charge_retry_delay(
    attempts: int, max_attempts: int, base_seconds: float, rand: Callable[[], float] = random.random
) -> float | None:
    """Seconds before the next attempt (exponential backoff, full jitter); None once all are spent.

    ``attempts`` counts the attempts made so far (the first retry follows attempt 1).
    """
    if attempts >= max_attempts:
        return None
    return backoff_delay(attempts, base_seconds, cap=MAX_RETRY_DELAY_SECONDS, rand=rand)


# ---- the payment's transitions ------------------------------------------------------------------
#
# The worker records a gateway's answer without holding the payment's row lock across the call, so
# each outcome is a guarded write: it applies only while the row is still in the state the outcome
# was decided from (a cancellation or another worker may have moved it meanwhile). The domain says
# what the transition is, from which states, and which event it raises; the repository performs it
# as one ``UPDATE … WHERE`` and says whether it applied; the service records the event if it did.


@dataclass(frozen=True)
class PaymentRef:
    """The ids an outcome's event carries."""

    payment_id: uuid.UUID
    order_id: uuid.UUID
    user_id: uuid.UUID | None

    def event_ids(self) -> dict[str, str]:
        return {
            "order_id": str(self.order_id),
            "user_id": str(self.user_id),
            "payment_id": str(self.payment_id),
        }


@dataclass(frozen=True)
class PaymentTransition:
    """Set ``values`` on the payment if its status is one of ``from_statuses`` and its gateway
    reference is absent or, when ``reference_may_be`` is given, equal to it (``any_reference``:
    not checked); ``event`` is raised when it applied."""

    payment_id: uuid.UUID
    from_statuses: tuple[PaymentStatus, ...]
    values: dict[str, Any]
    event: Event
    any_reference: bool = True
    reference_may_be: str | None = None


def completion(ref: PaymentRef, gateway_reference: str) -> PaymentTransition:
    """The charge went through: PENDING → COMPLETED."""
    return PaymentTransition(
        ref.payment_id,
        (PENDING,),
        {"status": COMPLETED, "gateway_reference": gateway_reference, "failure_reason": None},
        PaymentCompleted(**ref.event_ids()),
    )


def decline(ref: PaymentRef, reason: str) -> PaymentTransition:
    """The gateway declined (or refused the request as invalid): PENDING → FAILED."""
    return PaymentTransition(
        ref.payment_id,
        (PENDING,),
        {"status": FAILED, "failure_reason": reason},
        PaymentFailed(**ref.event_ids(), reason=reason),
    )


def late_charge(ref: PaymentRef, gateway_reference: str) -> PaymentTransition:
    """A voided (FAILED) payment was charged after all: remember the charge, and ask for its refund."""
    return PaymentTransition(
        ref.payment_id,
        (FAILED,),
        {"gateway_reference": gateway_reference},
        RefundRequested(**ref.event_ids()),
        any_reference=False,
    )


def refund(ref: PaymentRef, gateway_reference: str, refund_reference: str | None) -> PaymentTransition:
    """The charge ``gateway_reference`` was given back: COMPLETED (or a voided, charged FAILED) →
    REFUNDED, once."""
    return PaymentTransition(
        ref.payment_id,
        (COMPLETED, FAILED),
        {"status": REFUNDED, "gateway_reference": gateway_reference, "refund_reference": refund_reference},
        PaymentRefunded(**ref.event_ids()),
        any_reference=False,
        reference_may_be=gateway_reference,
    )
