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

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, Integer, Numeric, String, Text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.domain.backoff import backoff_delay
from app.domain.base import Base, new_id, utcnow
from app.domain.errors import InvalidTransition, ValidationFailed
from app.domain.events import (
    Event,
    PaymentCompleted,
    PaymentFailed,
    PaymentPartiallyRefunded,
    PaymentRefunded,
    RefundFailed,
    RefundRequested,
    RefundSucceeded,
)


class PaymentStatus(StrEnum):
    PENDING = "PENDING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    REFUNDED = "REFUNDED"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"  # 0 < refundedAmount < amount
    REQUIRES_ACTION = "REQUIRES_ACTION"  # the customer must authenticate (3-D Secure)
    PROCESSING = "PROCESSING"  # the gateway is still settling the charge


class RefundStatus(StrEnum):
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class PaymentMethod(StrEnum):
    CREDIT_CARD = "CREDIT_CARD"
    DEBIT_CARD = "DEBIT_CARD"
    PAYPAL = "PAYPAL"


class VoidReason(StrEnum):
    """``failureReason`` of a PENDING payment voided by its order's cancellation."""

    ORDER_CANCELLED = "ORDER_CANCELLED"  # the order was cancelled (by anyone, for any other reason)
    PAYMENT_TIMEOUT = "PAYMENT_TIMEOUT"  # the order expired with its payment still PENDING


# Module-level names for the members, as the rest of the code spells them.
PENDING, COMPLETED, FAILED, REFUNDED, PARTIALLY_REFUNDED, REQUIRES_ACTION, PROCESSING = PaymentStatus
R_PENDING, R_SUCCEEDED, R_FAILED = RefundStatus
PAYMENT_STATUSES = tuple(PaymentStatus)
CREDIT_CARD, DEBIT_CARD, PAYPAL = PaymentMethod
PAYMENT_METHODS = tuple(PaymentMethod)


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint(
            "status IN ('PENDING', 'COMPLETED', 'FAILED', 'REFUNDED', 'PARTIALLY_REFUNDED', "
            "'REQUIRES_ACTION', 'PROCESSING')",
            name="status_r2",
        ),
        CheckConstraint("method IN ('CREDIT_CARD', 'DEBIT_CARD', 'PAYPAL')", name="method"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=new_id)
    order_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("orders.id"), unique=True)
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(32), default=PENDING)
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
    # Oldest first. Loaded on first access only: read them inside the unit of work.
    refunds: Mapped[list[Refund]] = relationship(
        "Refund", order_by="Refund.created_at", viewonly=True, lazy="select"
    )

    @property
    def refunded_amount(self) -> Decimal:
        """The sum of the SUCCEEDED refunds (what the customer got back)."""
        return sum((r.amount for r in self.refunds if r.status == R_SUCCEEDED), Decimal("0.00"))

    @property
    def refundable_amount(self) -> Decimal:
        """What may still be refunded: the amount minus refunds that succeeded or may still succeed."""
        held = sum((r.amount for r in self.refunds if r.status != R_FAILED), Decimal("0.00"))
        return max(self.amount - held, Decimal("0.00"))


class Refund(Base):
    """One refund of (part of) a payment, sent to the gateway under its own idempotency key
    (``refund-<refundId>``). PENDING until the gateway says ``succeeded`` or ``failed`` (in its
    answer, a webhook, or when the sweep polls it); only SUCCEEDED refunds count."""

    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint("status IN ('PENDING', 'SUCCEEDED', 'FAILED')", name="status"),
        CheckConstraint("amount > 0", name="amount_positive"),
        Index("ix_refunds_payment_id", "payment_id"),
        Index("ix_refunds_status_updated_at", "status", "updated_at"),
        Index("uq_refunds_gateway_reference", "gateway_reference", unique=True),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=new_id)
    payment_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("payments.id"))
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    status: Mapped[str] = mapped_column(String(16), default=R_PENDING)
    reason: Mapped[str | None] = mapped_column(Text)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    gateway_reference: Mapped[str | None] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    @property
    def idempotency_key(self) -> str:
        return f"refund-{self.id}"


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
REFUND_UPDATED = "refund.updated"
CHARGE_REFUNDED = "charge.refunded"
REFUND_EVENT_TYPES = (REFUND_UPDATED, CHARGE_REFUNDED)
HANDLED_EVENT_TYPES = (INTENT_SUCCEEDED, INTENT_FAILED, *REFUND_EVENT_TYPES)


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


# ---- refunds ------------------------------------------------------------------------------------

# Payments that took money: a refund may give (part of) it back.
CHARGED_STATUSES = (COMPLETED, PARTIALLY_REFUNDED, REFUNDED)


def is_charged(payment: Payment) -> bool:
    """Money was taken: a completed payment, or a voided one whose charge went through after all."""
    return payment.status in CHARGED_STATUSES or (
        payment.status == FAILED and payment.gateway_reference is not None
    )


def refund_amount(payment: Payment, amount: Decimal | None) -> Decimal:
    """How much a new refund of ``payment`` takes: ``amount``, or by default all that is still
    refundable. ``ValidationFailed`` (422) for an amount ≤ 0 or with more than two decimals;
    ``InvalidTransition`` (409) when nothing was charged, or for more than is still refundable."""
    if amount is not None and (amount <= 0 or amount != amount.quantize(Decimal("0.01"))):
        raise ValidationFailed(
            "The refund amount must be positive, in cents", {"amount": ["Must be greater than 0."]}
        )
    if not is_charged(payment) or payment.gateway_reference is None:
        raise InvalidTransition(f"Nothing was charged for this payment; it is {payment.status}")
    refundable = payment.refundable_amount
    if refundable <= 0:
        raise InvalidTransition("Nothing is left to refund on this payment")
    if amount is None:
        return refundable
    if amount > refundable:
        raise InvalidTransition(f"At most {refundable} can still be refunded; asked for {amount}")
    return amount


# The gateway's refund statuses (Stripe: pending, requires_action, succeeded, failed, canceled).
GATEWAY_REFUND_STATUSES = {
    "pending": R_PENDING,
    "requires_action": R_PENDING,
    "succeeded": R_SUCCEEDED,
    "failed": R_FAILED,
    "canceled": R_FAILED,
}


def refund_step(current: str, reported: str) -> str | None:
    """The refund's new status when the gateway reports ``reported`` (ours), or None for no change.

    Monotonic: PENDING → SUCCEEDED | FAILED; the one way back is SUCCEEDED → FAILED (Stripe's
    refunds can fail after they succeeded); a FAILED refund stays FAILED.
    """
    if current == R_PENDING and reported in (R_SUCCEEDED, R_FAILED):
        return reported
    if current == R_SUCCEEDED and reported == R_FAILED:
        return R_FAILED
    return None


def status_after_refunds(payment: Payment) -> str:
    """The payment's status once its refunds are counted (their statuses already set):
    REFUNDED when all of it came back, PARTIALLY_REFUNDED for part; otherwise what it was before
    any refund (COMPLETED, or FAILED for a voided payment charged after all)."""
    if not is_charged(payment):
        return payment.status
    refunded = payment.refunded_amount
    if refunded >= payment.amount:
        return REFUNDED
    if refunded > 0:
        return PARTIALLY_REFUNDED
    return FAILED if payment.failure_reason in VOID_REASONS else COMPLETED


def refund_events(
    ref: PaymentRef, refund: Refund, before: str, after: str, amount_refunded: Decimal
) -> list[Event]:
    """What a refund's settlement tells the rest of the system: the refund's own outcome, and the
    payment's when its status moved (fully refunded, or partly)."""
    ids = ref.event_ids()
    events: list[Event] = []
    if refund.status == R_SUCCEEDED:
        events.append(RefundSucceeded(**ids, refund_id=str(refund.id), amount=str(refund.amount)))
    elif refund.status == R_FAILED:
        events.append(
            RefundFailed(
                **ids, refund_id=str(refund.id), amount=str(refund.amount), reason=refund.failure_reason
            )
        )
    if after != before and after == REFUNDED:
        events.append(PaymentRefunded(**ids))
    elif refund.status == R_SUCCEEDED and after == PARTIALLY_REFUNDED:
        events.append(PaymentPartiallyRefunded(**ids, amount=str(amount_refunded)))
    return events
