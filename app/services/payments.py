"""Payment use cases: charge each order's payment once, refund once, admin refunds, the sweep.

The worker never holds a row lock or an open transaction while it talks to the gateway: it reads
and counts the attempt in one short transaction, calls the gateway, then records the outcome in
another with conditional updates (``… WHERE status = 'PENDING'``), taking the order's row lock
first (the order in which ``apply_cancellation`` locks). So a cancellation that lands while a
charge is in flight wins the race cleanly, and the worker then refunds the charge it just made.

Exactly once: the gateway's idempotency key is the payment id, so a retried, re-delivered or
swept charge task replays the first charge instead of making another.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from app.adapters.gateway import (
    AlreadyRefunded,
    ChargeResult,
    GatewayRejected,
    GatewayUnavailable,
    PaymentDeclined,
    PaymentGateway,
)
from app.adapters.queue import CHARGE_PAYMENT, REFUND_PAYMENT, BrokerUnavailable, send_task
from app.domain import payments as pay
from app.domain.actors import SYSTEM, Actor
from app.domain.audit import AuditAction, AuditResource, created
from app.domain.base import utcnow
from app.domain.errors import Forbidden, InvalidTransition, NotFound
from app.domain.events import (
    Event,
    OrderCancelled,
    OrderPlaced,
    RefundRequested,
)
from app.domain.orders import PAYMENT_FAILED, PAYMENT_REFUNDED, PLACED, visible_order
from app.domain.payments import Payment
from app.log import get_logger
from app.repositories.payments import PaymentRepository
from app.services.cancellation import apply_cancellation
from app.services.dispatch import EventContext
from app.services.unit_of_work import ReadOnlyUnitOfWork, UnitOfWork

log = get_logger(__name__)

# A PENDING payment with no attempt for this long has lost its task (the longest retry pause is
# ``MAX_RETRY_DELAY_SECONDS``), and so has a charge to give back that nobody touched.
SWEEP_IDLE_SECONDS = 120
SWEEP_BATCH = 500
# How long after a cancellation to look up a charge whose attempt got no answer: by then any
# request still in flight (gateway timeout, task time limit) has ended.
LOOKUP_DELAY_SECONDS = 120

# Outcomes (the task's return value, for logs and tests).
COMPLETED = "COMPLETED"
DECLINED = "DECLINED"
REFUNDED = "REFUNDED"
RETRY = "RETRY"
GAVE_UP = "GAVE_UP"
SKIPPED = "SKIPPED"
NOTHING_CHARGED = "NOTHING_CHARGED"
REFUND_REJECTED = "REFUND_REJECTED"


@dataclass(frozen=True)
class PaymentOutcome:
    status: str
    retry_in: float | None = None  # set when the task should try again after this many seconds


@dataclass(frozen=True)
class _ChargeRequest:
    """What the gateway call needs, read before the transaction ends (no ORM access after it)."""

    payment_id: uuid.UUID
    order_id: uuid.UUID
    user_id: uuid.UUID
    amount: Decimal
    currency: str
    token: str
    attempts: int
    created_at: datetime

    @property
    def ref(self) -> pay.PaymentRef:
        return pay.PaymentRef(self.payment_id, self.order_id, self.user_id)


# ---- charging -----------------------------------------------------------------------------------


def charge_payment(
    payment_id: uuid.UUID, *, gateway: PaymentGateway, max_attempts: int, backoff_seconds: float
) -> PaymentOutcome:
    """Charge a PENDING payment of a PLACED order once; do nothing for any other payment."""
    request = _start_attempt(payment_id)
    if request is None:
        return PaymentOutcome(SKIPPED)
    try:
        result = gateway.charge(
            request.payment_id, request.order_id, request.amount, request.currency, request.token
        )
    except PaymentDeclined as exc:
        return _record_failure(request, exc.reason)
    except GatewayRejected as exc:
        log.warning("charge_rejected", payment_id=str(payment_id), code=exc.code, error=str(exc))
        if exc.code == "idempotency_error":
            # The key was used with other parameters: a charge may exist. Never guess: the payment
            # stays PENDING, expires, and the charge is then looked up and refunded if it exists.
            return PaymentOutcome(GAVE_UP)
        return _record_failure(request, exc.reason)
    except GatewayUnavailable as exc:
        delay = pay.charge_retry_delay(request.attempts, max_attempts, backoff_seconds)
        log.warning(
            "charge_attempt_failed",
            payment_id=str(payment_id),
            attempts=request.attempts,
            code=exc.code,
            error=str(exc),
            retry_in=delay,
        )
        if delay is None:
            # The outcome may be unknown: never guess. The payment stays PENDING, and the order
            # expires (PAYMENT_TIMEOUT) unless a later charge settles it.
            return PaymentOutcome(GAVE_UP)
        return PaymentOutcome(RETRY, retry_in=delay)
    return _record_success(request, result, gateway)


def _start_attempt(payment_id: uuid.UUID) -> _ChargeRequest | None:
    with UnitOfWork() as uow:
        payments = uow.payments
        payment = payments.get(payment_id)
        order = payments.order_of(payment) if payment is not None else None
        if payment is None or order is None:
            log.warning("charge_unknown_payment", payment_id=str(payment_id))
            return None
        order_status, user_id = order
        if pay.charge_step(payment, order_status) != pay.CHARGE:
            log.info("charge_skipped", payment_id=str(payment_id), status=payment.status, order=order_status)
            return None
        attempts = payments.start_attempt(payment_id)
        if attempts is None:
            return None
        request = _ChargeRequest(
            payment_id=payment.id,
            order_id=payment.order_id,
            user_id=user_id,
            amount=payment.amount,
            currency=payment.currency,
            token=payment.payment_token,
            attempts=attempts,
            created_at=payment.created_at,
        )
        uow.commit()
    return request


def _record_success(request: _ChargeRequest, result: ChargeResult, gateway: PaymentGateway) -> PaymentOutcome:
    with UnitOfWork() as uow:
        uow.orders.lock_row(request.order_id)
        completed = pay.completion(request.ref, result.reference)
        if uow.payments.apply(completed):
            uow.record(completed.event)
            uow.commit()
            log.info("payment_completed", payment_id=str(request.payment_id), reference=result.reference)
            return PaymentOutcome(COMPLETED)
        # No longer PENDING: another task recorded this very charge, or the order was cancelled
        # while we were charging — then the charge must not stand.
        late = pay.late_charge(request.ref, result.reference)
        if not uow.payments.apply(late):
            return PaymentOutcome(SKIPPED)
        # Its RefundRequested, through the outbox, makes sure the refund happens even if the
        # attempt below fails.
        uow.record(late.event)
        uow.commit()
    log.warning("charged_after_cancellation", payment_id=str(request.payment_id), reference=result.reference)
    return refund_payment(request.payment_id, gateway=gateway)


def _record_failure(request: _ChargeRequest, reason: str) -> PaymentOutcome:
    """Declined (or refused as invalid): FAILED, and the order CANCELLED with its stock returned."""
    with UnitOfWork() as uow:
        uow.orders.lock_row(request.order_id)
        declined = pay.decline(request.ref, reason)
        if not uow.payments.apply(declined):
            return PaymentOutcome(SKIPPED)
        uow.record(declined.event)
        apply_cancellation(uow, request.order_id, SYSTEM, PAYMENT_FAILED)
        uow.commit()
    log.info("payment_failed", payment_id=str(request.payment_id), reason=reason)
    return PaymentOutcome(DECLINED)


# ---- refunding ----------------------------------------------------------------------------------


def refund_payment(
    payment_id: uuid.UUID,
    *,
    gateway: PaymentGateway,
    attempt: int = 1,
    max_attempts: int = 1,
    backoff_seconds: float = 0.0,
) -> PaymentOutcome:
    """Give back the money taken for a payment: COMPLETED (or charged after its order was
    cancelled) → refunded through the gateway → REFUNDED. A PLACED order is then cancelled
    (``cancelReason`` PAYMENT_REFUNDED); a SHIPPED or DELIVERED one keeps its status.

    A payment voided by a cancellation after an attempt that got no answer is looked up at the
    gateway first: refunded if the charge went through, left FAILED if it did not.
    """
    with UnitOfWork() as uow:
        payments = uow.payments
        payment = payments.get(payment_id)
        if payment is None:
            return PaymentOutcome(SKIPPED)
        reference = pay.refundable_reference(payment)
        unknown = reference is None and pay.outcome_unknown(payment)
        target = _RefundTarget.of(payment, payments)
    if reference is None and not unknown:
        log.info("refund_skipped", payment_id=str(payment_id), status=target.status)
        return PaymentOutcome(SKIPPED)
    try:
        if reference is None:
            found = gateway.find_charge(payment_id, target.created_at)
            if found is None:
                log.info("voided_payment_never_charged", payment_id=str(payment_id))
                return PaymentOutcome(NOTHING_CHARGED)
            reference = found.reference
            log.warning("voided_payment_was_charged", payment_id=str(payment_id), reference=reference)
        try:
            refund_reference: str | None = gateway.refund(
                payment_id, reference, target.amount, target.currency
            ).reference
        except AlreadyRefunded:
            refund_reference = None  # given back outside of us (e.g. the dashboard): that is fine
    except GatewayUnavailable as exc:
        delay = pay.charge_retry_delay(attempt, max_attempts, backoff_seconds)
        log.warning("refund_attempt_failed", payment_id=str(payment_id), error=str(exc), retry_in=delay)
        # Out of retries, the sweep queues the refund again (``unrefunded_charges``).
        return PaymentOutcome(RETRY if delay is not None else GAVE_UP, retry_in=delay)
    except GatewayRejected as exc:
        log.error("refund_rejected", payment_id=str(payment_id), code=exc.code, error=str(exc))
        return PaymentOutcome(REFUND_REJECTED)
    return _record_refund(target, reference, refund_reference)


@dataclass(frozen=True)
class _RefundTarget:
    payment_id: uuid.UUID
    order_id: uuid.UUID
    user_id: uuid.UUID | None
    status: str
    amount: Decimal
    currency: str
    created_at: datetime

    @classmethod
    def of(cls, payment: Payment, payments: PaymentRepository) -> _RefundTarget:
        order = payments.order_of(payment)
        return cls(
            payment.id,
            payment.order_id,
            order[1] if order else None,
            payment.status,
            payment.amount,
            payment.currency,
            payment.created_at,
        )


def _record_refund(target: _RefundTarget, reference: str, refund_reference: str | None) -> PaymentOutcome:
    with UnitOfWork() as uow:
        order = uow.orders.lock(target.order_id)
        refunded = pay.refund(
            pay.PaymentRef(target.payment_id, target.order_id, target.user_id), reference, refund_reference
        )
        if not uow.payments.apply(refunded):
            return PaymentOutcome(SKIPPED)  # another task recorded it first
        uow.record(refunded.event)
        if order is not None and order.status == PLACED:
            apply_cancellation(uow, target.order_id, SYSTEM, PAYMENT_REFUNDED)
        uow.commit()
    log.info("payment_refunded", payment_id=str(target.payment_id), refund=refund_reference)
    return PaymentOutcome(REFUNDED)


# ---- the API: read the payment, ask for a refund --------------------------------------------------


def get_payment(actor: Actor, order_id: uuid.UUID) -> Payment:
    """The payment of an order its owner or an admin may see (another customer's: NotFound)."""
    with ReadOnlyUnitOfWork() as uow:
        payment = visible_order(actor, uow.orders.get(order_id)).payment
    if payment is None:
        raise NotFound("The order has no payment")
    return payment


def request_refund(actor: Actor, order_id: uuid.UUID) -> Payment:
    """Admin: queue the refund of a COMPLETED payment (409 otherwise); the worker refunds it."""
    if not actor.is_staff:
        raise Forbidden("Refunds are reserved to administrators")
    with UnitOfWork() as uow:
        order = visible_order(actor, uow.orders.get(order_id))
        payment = order.payment
        if payment is None:
            raise NotFound("The order has no payment")
        if payment.status != pay.COMPLETED:
            raise InvalidTransition(f"Only a COMPLETED payment can be refunded; this one is {payment.status}")
        payment_id = payment.id
        uow.record(
            RefundRequested(order_id=str(order.id), user_id=str(order.user_id), payment_id=str(payment_id))
        )
        uow.audit(
            actor,
            AuditAction.REFUND_REQUESTED,
            AuditResource.PAYMENT,
            payment_id,
            created({"refundAmount": payment.amount}),
        )
        uow.commit()
        refreshed = uow.payments.get(payment_id)
    assert refreshed is not None
    return refreshed


# ---- the sweep and the event handlers -------------------------------------------------------------


def sweep_pending_payments(
    *, max_attempts: int, idle_seconds: float = SWEEP_IDLE_SECONDS, now: datetime | None = None
) -> dict[str, int]:
    """Beat: queue charges whose task was lost, and refunds that were never done.

    Safe to repeat: a charge replays under the payment's idempotency key; a refund under its own.
    """
    idle_since = (now or utcnow()) - timedelta(seconds=idle_seconds)
    with UnitOfWork() as uow:
        charges = uow.payments.stale_pending(
            idle_since=idle_since, max_attempts=max_attempts, limit=SWEEP_BATCH
        )
        refunds = uow.payments.unrefunded_charges(idle_since=idle_since, limit=SWEEP_BATCH)
    queued = {"charges": 0, "refunds": 0}
    try:
        for payment_id in charges:
            send_task(CHARGE_PAYMENT, [str(payment_id)])
            queued["charges"] += 1
        for payment_id in refunds:
            send_task(REFUND_PAYMENT, [str(payment_id)])
            queued["refunds"] += 1
    except BrokerUnavailable as exc:
        log.warning("sweep_interrupted", error=str(exc), **queued)
    if any(queued.values()):
        log.info("payments_swept", **queued)
    return queued


def on_order_placed(event: Event, context: EventContext) -> None:
    """Handler: charge the new order's payment."""
    assert isinstance(event, OrderPlaced)
    send_task(CHARGE_PAYMENT, [event.payment_id], request_id=context.request_id)


def on_refund_requested(event: Event, context: EventContext) -> None:
    """Handler: refund the payment (a cancelled paid order, or an admin's request)."""
    assert isinstance(event, RefundRequested)
    send_task(REFUND_PAYMENT, [event.payment_id], request_id=context.request_id)


def on_order_cancelled(event: Event, context: EventContext) -> None:
    """Handler: a cancellation voided a payment whose last charge attempt got no answer — once
    any request in flight has ended, look the charge up and refund it if it went through."""
    assert isinstance(event, OrderCancelled)
    with UnitOfWork() as uow:
        order = uow.orders.get(uuid.UUID(event.order_id))
        payment = order.payment if order is not None else None
        payment_id = payment.id if payment is not None and pay.outcome_unknown(payment) else None
    if payment_id is not None:
        send_task(
            REFUND_PAYMENT, [str(payment_id)], countdown=LOOKUP_DELAY_SECONDS, request_id=context.request_id
        )
