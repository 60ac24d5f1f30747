"""Payment use cases: charge each order's payment once, refund once, admin refunds, the sweep.

The worker never holds a row lock or an open transaction while it talks to the gateway: it reads
and counts the attempt in one short transaction, calls the gateway, then records the outcome in
another with conditional updates (``… WHERE status = 'PENDING'``), taking the order's row lock
first (the order in which ``apply_cancellation`` locks). So a cancellation that lands while a
charge is in flight wins the race cleanly, and the worker then refunds the charge it just made.

Exactly once: the PaymentIntent is created first (gateway idempotency key ``intent-<paymentId>``)
and its id stored on the payment before it is confirmed (``confirm-<paymentId>``), so a retried,
re-delivered or swept charge task replays the first charge instead of making another. A void
(any cancellation of the order: customer, admin, expiry) cancels that stored intent at the
gateway: a confirm that arrives later — a slow gateway answering after our timeout — is refused,
and a confirm that won the race is refunded.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from app.adapters.gateway import (
    WAITING_STATUSES,
    AlreadyRefunded,
    ChargeResult,
    GatewayError,
    GatewayRejected,
    GatewayUnavailable,
    PaymentDeclined,
    PaymentGateway,
    StripeGateway,
    from_minor_units,
    to_minor_units,
)
from app.adapters.queue import CHARGE_PAYMENT, REFUND_PAYMENT, BrokerUnavailable, send_task
from app.domain import payments as pay
from app.domain.actors import SYSTEM, Actor
from app.domain.audit import AuditAction, AuditResource, created
from app.domain.base import utcnow
from app.domain.errors import FeatureDisabled, Forbidden, InvalidTransition, NotFound, ValidationFailed
from app.domain.events import (
    Event,
    OrderCancelled,
    OrderPlaced,
    PaymentRetried,
    RefundRequested,
)
from app.domain.orders import CANCELLED, PAYMENT_FAILED, PLACED, visible_order
from app.domain.payments import Payment
from app.log import get_logger
from app.repositories.payments import PaymentRepository
from app.services import features, refunds
from app.services.cancellation import apply_cancellation
from app.services.dispatch import EventContext, Handler
from app.services.idempotency import Claim, Idempotent, Replay, run_idempotently
from app.services.unit_of_work import ReadOnlyUnitOfWork, UnitOfWork, run_in_transaction

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
REFUND_PENDING = "REFUND_PENDING"
REFUND_FAILED = "REFUND_FAILED"


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
    intent_id: str | None
    charge_round: int = 1
    poll: bool = False

    @property
    def ref(self) -> pay.PaymentRef:
        return pay.PaymentRef(self.payment_id, self.order_id, self.user_id)


# ---- charging -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """What a decline does: with a window (and the ``payment-retry`` toggle on for the customer)
    the order waits ``window_seconds`` for another attempt; without, it is cancelled at once."""

    window_seconds: int = 0
    feature_ttl: float = 5.0

    def due_by(self, user_id: uuid.UUID | None) -> datetime | None:
        if self.window_seconds <= 0:
            return None
        enabled = features.is_enabled(features.PAYMENT_RETRY, ttl=self.feature_ttl, user_id=user_id)
        return pay.retry_due_by(utcnow(), self.window_seconds, enabled)


NO_RETRY = RetryPolicy()


@dataclass(frozen=True)
class ChargeSettings:
    """What charging needs besides the payment: the gateway and the attempt rules."""

    gateway: PaymentGateway
    max_attempts: int
    backoff_seconds: float
    retry: RetryPolicy = NO_RETRY

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ChargeSettings:
        return cls(
            gateway=StripeGateway.from_config(config),
            max_attempts=int(config["PAYMENT_MAX_ATTEMPTS"]),
            backoff_seconds=float(config["PAYMENT_BACKOFF_SECONDS"]),
            retry=RetryPolicy(
                int(config["PAYMENT_RETRY_WINDOW_SECONDS"]), float(config["FEATURE_CACHE_SECONDS"])
            ),
        )

    def charge(self, payment_id: uuid.UUID, abandoned_intent: str | None = None) -> PaymentOutcome:
        return charge_payment(
            payment_id,
            gateway=self.gateway,
            max_attempts=self.max_attempts,
            backoff_seconds=self.backoff_seconds,
            retry=self.retry,
            abandoned_intent=abandoned_intent,
        )


def charge_payment(
    payment_id: uuid.UUID,
    *,
    gateway: PaymentGateway,
    max_attempts: int,
    backoff_seconds: float,
    retry: RetryPolicy = NO_RETRY,
    abandoned_intent: str | None = None,
) -> PaymentOutcome:
    """Charge a PENDING payment of a PLACED order once; ask the gateway about one waiting for an
    authentication or a settlement (REQUIRES_ACTION, PROCESSING: the sweep's poll, so a lost
    webhook only delays); do nothing for any other payment. ``abandoned_intent``: the intent of
    an earlier attempt the customer gave up authenticating, cancelled before the new charge (if
    the customer authenticated it after all, that charge completes the payment)."""
    request = _start_attempt(payment_id)
    if request is None:
        return PaymentOutcome(SKIPPED)
    try:
        if abandoned_intent is not None and not request.poll:
            earlier = gateway.void_intent(abandoned_intent)
            if earlier is not None:
                return _record_success(request, earlier, gateway)
        intent_id = request.intent_id
        if request.poll:
            if intent_id is None:
                return PaymentOutcome(SKIPPED)
            result = gateway.poll_intent(request.payment_id, intent_id, request.amount, request.currency)
            return _record_success(request, result, gateway)
        if intent_id is None:
            intent_id = gateway.create_intent(
                request.payment_id,
                request.order_id,
                request.amount,
                request.currency,
                charge_round=request.charge_round,
            )
            if not _store_intent(request, intent_id):
                log.info("charge_voided_before_confirm", payment_id=str(payment_id), intent=intent_id)
                return refund_payment(payment_id, gateway=gateway)  # cancels the intent
        result = gateway.confirm_intent(
            request.payment_id,
            intent_id,
            request.amount,
            request.currency,
            request.token,
            charge_round=request.charge_round,
        )
    except PaymentDeclined as exc:
        return _record_failure(request, exc.reason, retry)
    except GatewayRejected as exc:
        log.warning("charge_rejected", payment_id=str(payment_id), code=exc.code, error=str(exc))
        if exc.code == "idempotency_error":
            # The key was used with other parameters: a charge may exist. Never guess: the payment
            # stays PENDING, expires, and the charge is then looked up and refunded if it exists.
            return PaymentOutcome(GAVE_UP)
        return _record_failure(request, exc.reason, retry)
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
        step = pay.charge_step(payment, order_status)
        if step == pay.SKIP:
            log.info("charge_skipped", payment_id=str(payment_id), status=payment.status, order=order_status)
            return None
        attempts = payment.attempts if step == pay.POLL else payments.start_attempt(payment_id)
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
            intent_id=payment.intent_id,
            charge_round=payment.charge_round or 1,
            poll=step == pay.POLL,
        )
        uow.commit()
    return request


def _store_intent(request: _ChargeRequest, intent_id: str) -> bool:
    """Remember the created intent before confirming it; False when the payment was voided
    meanwhile (the caller then cancels the intent instead of confirming it). Any other state (a
    concurrent task completed it) goes on to the confirm, which replays and changes nothing."""
    with UnitOfWork() as uow:
        status = uow.payments.store_intent(request.payment_id, intent_id)
        uow.commit()
    return status != pay.FAILED


def _record_success(request: _ChargeRequest, result: ChargeResult, gateway: PaymentGateway) -> PaymentOutcome:
    if result.status in WAITING_STATUSES:
        return _record_waiting(request, result)
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


def _record_waiting(request: _ChargeRequest, result: ChargeResult) -> PaymentOutcome:
    """Confirmed but not finished: REQUIRES_ACTION (the owner authenticates with Stripe.js) or
    PROCESSING. Neither cancels the order; a gateway event, the sweep's poll or the expiry ends it."""
    status = pay.REQUIRES_ACTION if result.status == "requires_action" else pay.PROCESSING
    transition = pay.waiting(
        request.ref, status, result.reference, result.next_action_type, result.client_secret
    )
    with UnitOfWork() as uow:
        uow.orders.lock_row(request.order_id)
        if not uow.payments.apply(transition):
            return PaymentOutcome(SKIPPED)
        uow.record(transition.event)
        uow.commit()
    log.info("payment_waiting", payment_id=str(request.payment_id), status=status, reference=result.reference)
    return PaymentOutcome(status)


def _record_failure(request: _ChargeRequest, reason: str, retry: RetryPolicy) -> PaymentOutcome:
    """Declined (or refused as invalid): FAILED; the order waits for another attempt within the
    retry window (stock held, ``paymentDueBy``), or, without one, is CANCELLED with its stock back."""
    with UnitOfWork() as uow:
        uow.orders.lock_row(request.order_id)
        if not _decline(uow, request.ref, reason, retry):
            return PaymentOutcome(SKIPPED)
        uow.commit()
    log.info("payment_failed", payment_id=str(request.payment_id), reason=reason)
    return PaymentOutcome(DECLINED)


def _decline(uow: UnitOfWork, ref: pay.PaymentRef, reason: str, retry: RetryPolicy) -> bool:
    """The decline of a PENDING payment, in the caller's unit of work (order row locked)."""
    due_by = retry.due_by(ref.user_id)
    declined = pay.decline(ref, reason, due_by)
    if not uow.payments.apply(declined):
        return False
    uow.record(declined.event)
    if due_by is None:
        apply_cancellation(uow, ref.order_id, SYSTEM, PAYMENT_FAILED)
        return True
    order = uow.orders.lock(ref.order_id)
    if order is None or order.status != PLACED:
        return True
    order.payment_due_by = due_by
    order.version += 1
    uow.orders.save()
    return True


# ---- refunding ----------------------------------------------------------------------------------


def refund_payment(
    payment_id: uuid.UUID,
    *,
    gateway: PaymentGateway,
    refund_id: uuid.UUID | None = None,
    attempt: int = 1,
    max_attempts: int = 1,
    backoff_seconds: float = 0.0,
) -> PaymentOutcome:
    """Send one refund to the gateway (``refund_id``), or, without one, give back everything still
    refundable of a payment whose order was cancelled (or that was charged after its void): a
    refund for the rest is created through ``services.refunds`` and sent. Either way the refund
    goes through the gateway under its own key, and what the gateway answers settles it
    (``succeeded``/``failed`` at once; ``pending`` later, by webhook or the sweep's poll).

    A payment voided by a cancellation after an attempt that got no answer has its stored
    PaymentIntent cancelled at the gateway (or, with none stored, its charge looked up): refunded
    if the charge went through, left FAILED if it did not.
    """
    retry = _Retry(attempt, max_attempts, backoff_seconds)
    if refund_id is None:
        prepared = _prepare_full_refund(payment_id, gateway, retry)
        if isinstance(prepared, PaymentOutcome):
            return prepared
        refund_id = prepared
    return _send_refund(refund_id, gateway, retry)


@dataclass(frozen=True)
class _Retry:
    attempt: int
    max_attempts: int
    backoff_seconds: float

    def after(self, exc: GatewayError, what: str, **fields: Any) -> PaymentOutcome:
        delay = pay.charge_retry_delay(self.attempt, self.max_attempts, self.backoff_seconds)
        log.warning(what, error=str(exc), retry_in=delay, **fields)
        # Out of retries, the sweep queues it again (``stale_refunds``, ``unrefunded_charges``).
        return PaymentOutcome(RETRY if delay is not None else GAVE_UP, retry_in=delay)


def _prepare_full_refund(
    payment_id: uuid.UUID, gateway: PaymentGateway, retry: _Retry
) -> uuid.UUID | PaymentOutcome:
    """The refund to send for "give back the rest": a PENDING one already there, or a new one."""
    with UnitOfWork() as uow:
        payment = uow.payments.get(payment_id)
        if payment is None:
            return PaymentOutcome(SKIPPED)
        unknown = payment.gateway_reference is None and pay.outcome_unknown(payment)
        target = _RefundTarget.of(payment, uow.payments)
    if unknown:
        try:
            if target.intent_id is not None:
                found = gateway.void_intent(target.intent_id)
            else:
                found = gateway.find_charge(payment_id, target.created_at)
        except GatewayUnavailable as exc:
            return retry.after(exc, "void_attempt_failed", payment_id=str(payment_id))
        except GatewayRejected as exc:
            log.error("void_rejected", payment_id=str(payment_id), code=exc.code, error=str(exc))
            return PaymentOutcome(REFUND_REJECTED)
        if found is None:
            log.info("voided_payment_never_charged", payment_id=str(payment_id))
            return PaymentOutcome(NOTHING_CHARGED)
        log.warning("voided_payment_was_charged", payment_id=str(payment_id), reference=found.reference)
        with UnitOfWork() as uow:
            uow.orders.lock_row(target.order_id)
            # Not its RefundRequested: the refund is made right below (the sweep backs it up).
            uow.payments.apply(pay.late_charge(target.ref, found.reference))
            uow.commit()

    def transaction(uow: UnitOfWork) -> uuid.UUID | PaymentOutcome:
        payment = uow.payments.get(payment_id)
        order = uow.payments.order_of(payment) if payment is not None else None
        if payment is None or order is None:
            return PaymentOutcome(SKIPPED)
        pending = [r.id for r in payment.refunds if r.status == pay.R_PENDING]
        if pending:
            return pending[0]  # a repeat of this task: send (or ask about) the one already made
        if order[0] != CANCELLED and payment.status != pay.FAILED and payment.refunds:
            return PaymentOutcome(SKIPPED)  # "the rest" is meant for a cancelled or voided payment
        try:
            refund = refunds.request_refund(uow, payment_id, None, _FULL_REFUND_REASON, announce=False)
        except (InvalidTransition, ValidationFailed):
            log.info("refund_skipped", payment_id=str(payment_id), status=payment.status)
            return PaymentOutcome(SKIPPED)
        refund_id = refund.id
        uow.commit()
        return refund_id

    return run_in_transaction(transaction)


_FULL_REFUND_REASON = "ORDER_CANCELLED"


@dataclass(frozen=True)
class _RefundTarget:
    payment_id: uuid.UUID
    order_id: uuid.UUID
    user_id: uuid.UUID | None
    status: str
    amount: Decimal
    currency: str
    created_at: datetime
    intent_id: str | None
    gateway_reference: str | None

    @property
    def ref(self) -> pay.PaymentRef:
        return pay.PaymentRef(self.payment_id, self.order_id, self.user_id)

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
            payment.intent_id,
            payment.gateway_reference,
        )


@dataclass(frozen=True)
class _RefundSend:
    refund_id: uuid.UUID
    payment_id: uuid.UUID
    charge_reference: str
    amount: Decimal
    currency: str
    poll_reference: str | None  # known to the gateway already: ask it, do not send again


def _send_refund(refund_id: uuid.UUID, gateway: PaymentGateway, retry: _Retry) -> PaymentOutcome:
    with UnitOfWork() as uow:
        refund = uow.payments.get_refund(refund_id)
        if refund is None or refund.status != pay.R_PENDING:
            return PaymentOutcome(SKIPPED)
        payment = uow.payments.get(refund.payment_id)
        if payment is None or payment.gateway_reference is None:
            return PaymentOutcome(SKIPPED)
        if refund.gateway_reference is None and uow.payments.start_refund_attempt(refund_id) is None:
            return PaymentOutcome(SKIPPED)
        send = _RefundSend(
            refund_id,
            payment.id,
            payment.gateway_reference,
            refund.amount,
            payment.currency,
            refund.gateway_reference,
        )
        uow.commit()
    reference: str | None
    try:
        if send.poll_reference is not None:
            result = gateway.get_refund(send.poll_reference)
        else:
            result = gateway.refund(
                send.payment_id, send.charge_reference, send.amount, send.currency, refund_id=refund_id
            )
        status = pay.GATEWAY_REFUND_STATUSES.get(result.status, pay.R_PENDING)
        reference, failure = result.reference, result.failure_reason
    except AlreadyRefunded:
        # Given back outside of us (e.g. the dashboard) before ours was made: the money is back.
        status, reference, failure = pay.R_SUCCEEDED, None, None
    except GatewayUnavailable as exc:
        return retry.after(
            exc, "refund_attempt_failed", payment_id=str(send.payment_id), refund_id=str(refund_id)
        )
    except GatewayRejected as exc:
        # Refused as invalid: final. FAILED with its reason, the admins are told; never retried.
        log.error("refund_rejected", payment_id=str(send.payment_id), code=exc.code, error=str(exc))
        status, reference, failure = pay.R_FAILED, None, exc.reason

    def transaction(uow: UnitOfWork) -> None:
        refunds.settle_refund(uow, refund_id, status, gateway_reference=reference, failure_reason=failure)
        uow.commit()

    run_in_transaction(transaction)
    return PaymentOutcome(
        {pay.R_SUCCEEDED: REFUNDED, pay.R_FAILED: REFUND_FAILED}.get(status, REFUND_PENDING)
    )


# ---- the API: read the payment, ask for a refund --------------------------------------------------


def get_payment(actor: Actor, order_id: uuid.UUID) -> Payment:
    """The payment of an order its owner or an admin may see (another customer's: NotFound)."""
    with ReadOnlyUnitOfWork() as uow:
        order = visible_order(actor, uow.orders.get(order_id))
        payment = order.payment
        if payment is None:
            raise NotFound("The order has no payment")
        _ = payment.refunds  # loaded while the unit of work is open
    # The client secret finishes the payment: its owner's alone (not even an admin's).
    payment.show_next_action = actor.user_id == order.user_id
    return payment


def request_refund(
    actor: Actor,
    order_id: uuid.UUID,
    amount: Decimal | None = None,
    reason: str | None = None,
    *,
    idempotency: Idempotent[Payment] | None = None,
) -> Payment | Replay:
    """Admin: refund ``amount`` (default: all still refundable) of an order's payment; the worker
    sends it. 409 when nothing (or less than asked) is left to refund, 422 for an amount ≤ 0."""
    if not actor.is_staff:
        raise Forbidden("Refunds are reserved to administrators")

    def work(claim: Claim[Payment] | None) -> Payment:
        def transaction(uow: UnitOfWork) -> Payment:
            payment = visible_order(actor, uow.orders.get(order_id)).payment
            if payment is None:
                raise NotFound("The order has no payment")
            refund = refunds.request_refund(uow, payment.id, amount, reason)
            uow.audit(
                actor,
                AuditAction.REFUND_REQUESTED,
                AuditResource.PAYMENT,
                payment.id,
                created({"refundId": refund.id, "amount": refund.amount, "reason": reason}),
            )
            refreshed = uow.payments.lock(payment.id)  # with the new refund
            assert refreshed is not None
            if claim is not None:
                claim.remember(uow, refreshed)
            uow.commit()
            _ = refreshed.refunds
            return refreshed

        return run_in_transaction(transaction)

    return run_idempotently(idempotency, work)


def retry_payment(
    actor: Actor,
    order_id: uuid.UUID,
    payment_token: str,
    payment_method: str | None = None,
    *,
    feature_ttl: float = 5.0,
    idempotency: Idempotent[Payment] | None = None,
) -> Payment | Replay:
    """The owner pays a declined order again (another card) within its window: the payment is
    PENDING again with a new charge round (a new PaymentIntent, new gateway keys), charged by the
    worker. An admin → Forbidden; another customer → NotFound; not retryable → InvalidTransition."""
    if actor.is_admin:
        raise Forbidden("Only the order's owner can pay it")
    if not features.is_enabled(features.PAYMENT_RETRY, ttl=feature_ttl, user_id=actor.user_id):
        raise FeatureDisabled("Paying again is temporarily disabled", retry_after=30)

    def work(claim: Claim[Payment] | None) -> Payment:
        def transaction(uow: UnitOfWork) -> Payment:
            order = visible_order(actor, uow.orders.lock(order_id))
            if order.user_id != actor.user_id:
                raise NotFound("The order was not found")
            payment = uow.orders.lock_payment(order_id)
            refusal = pay.retry_refusal(payment, order.status, utcnow(), order.payment_due_by)
            if refusal is not None:
                raise InvalidTransition(refusal)
            assert payment is not None
            abandoned = payment.intent_id if payment.status == pay.REQUIRES_ACTION else None
            payment.status = pay.PENDING
            payment.payment_token = payment_token
            payment.method = payment_method or payment.method
            payment.charge_round = (payment.charge_round or 1) + 1
            payment.intent_id = None
            payment.gateway_reference = None
            payment.failure_reason = None
            payment.attempts = 0
            payment.next_action_type = None
            payment.client_secret = None
            payment.updated_at = utcnow()
            uow.record(
                PaymentRetried(
                    order_id=str(order.id),
                    user_id=str(order.user_id),
                    payment_id=str(payment.id),
                    abandoned_intent=abandoned,
                )
            )
            uow.payments.flush()
            if claim is not None:
                claim.remember(uow, payment)
            uow.commit()
            _ = payment.refunds
            return payment

        return run_in_transaction(transaction)

    return run_idempotently(idempotency, work)


# ---- webhooks in: the gateway tells us what happened ---------------------------------------------


def handle_gateway_event(
    event_id: str, event_type: str, obj: dict[str, Any], *, retry: RetryPolicy = NO_RETRY
) -> str:
    """Apply a verified webhook event once (its id is stored); what it did, for logs and tests.

    Monotonic: each outcome is the same guarded transition the worker uses, so a late or
    repeated event never moves a payment backwards — a success on a PENDING payment completes it,
    on a voided one asks for the refund; a failure only fails a PENDING payment.
    """
    with UnitOfWork() as uow:
        if not uow.payments.first_receipt(event_id, event_type):
            return "DUPLICATE"
        outcome = _apply_gateway_event(uow, event_type, obj, retry)
        uow.commit()
    log.info("gateway_event", event_id=event_id, type=event_type, outcome=outcome)
    return outcome


def _apply_gateway_event(uow: UnitOfWork, event_type: str, obj: dict[str, Any], retry: RetryPolicy) -> str:
    if event_type not in pay.HANDLED_EVENT_TYPES:
        return "IGNORED"
    if event_type in pay.REFUND_EVENT_TYPES:
        return _apply_refund_event(uow, event_type, obj)
    if event_type in (pay.DISPUTE_CREATED, pay.DISPUTE_CLOSED):
        return _apply_dispute_event(uow, obj)
    metadata = obj.get("metadata")
    raw_id = metadata.get("paymentId") if isinstance(metadata, dict) else None
    try:
        payment_id = uuid.UUID(str(raw_id))
    except ValueError:
        return "UNKNOWN_PAYMENT"
    payment = uow.payments.get(payment_id)
    order = uow.payments.order_of(payment) if payment is not None else None
    intent_id = obj.get("id")
    if payment is None or order is None or not isinstance(intent_id, str):
        return "UNKNOWN_PAYMENT"
    if payment.intent_id not in (None, intent_id) or _round_of(metadata) != (payment.charge_round or 1):
        return "OTHER_INTENT"  # e.g. the intent of an earlier attempt the customer retried
    ref = pay.PaymentRef(payment.id, payment.order_id, order[1])
    uow.orders.lock_row(payment.order_id)
    if event_type == pay.INTENT_SUCCEEDED:
        if obj.get("amount") != to_minor_units(payment.amount, payment.currency):
            log.error("gateway_event_amount_mismatch", payment_id=str(payment_id), amount=obj.get("amount"))
            return "AMOUNT_MISMATCH"
        for transition in (pay.completion(ref, intent_id), pay.late_charge(ref, intent_id)):
            if uow.payments.apply(transition):
                uow.record(transition.event)
                return transition.event.__class__.__name__
        return "UNCHANGED"
    if event_type in (pay.INTENT_PROCESSING, pay.INTENT_REQUIRES_ACTION):
        action = obj.get("next_action")
        action_type = action.get("type") if isinstance(action, dict) else None
        secret = obj.get("client_secret")
        waiting = pay.waiting(
            ref,
            pay.PROCESSING if event_type == pay.INTENT_PROCESSING else pay.REQUIRES_ACTION,
            intent_id,
            action_type.upper() if isinstance(action_type, str) else None,
            secret if isinstance(secret, str) else None,
        )
        if not uow.payments.apply(waiting):
            return "UNCHANGED"
        uow.record(waiting.event)
        return waiting.event.__class__.__name__
    if event_type == pay.INTENT_CANCELED:
        # Cancelled at the gateway while we still waited (e.g. from the dashboard): a decline.
        # Our own voids find the payment FAILED already: nothing changes.
        if not _decline(uow, ref, "PAYMENT_INTENT_CANCELED", retry):
            return "UNCHANGED"
        return "PaymentFailed"
    error = obj.get("last_payment_error")
    code = error.get("decline_code") or error.get("code") if isinstance(error, dict) else None
    if not _decline(uow, ref, str(code or "card_declined").upper(), retry):
        return "UNCHANGED"
    return "PaymentFailed"


def _apply_dispute_event(uow: UnitOfWork, obj: dict[str, Any]) -> str:
    """``charge.dispute.created`` / ``closed``: the dispute on the payment of its PaymentIntent."""
    intent, reference = obj.get("payment_intent"), obj.get("id")
    status, reason, amount = obj.get("status"), obj.get("reason"), obj.get("amount")
    if not all(isinstance(v, str) for v in (intent, reference, status, reason)) or not isinstance(
        amount, int
    ):
        return "UNKNOWN_PAYMENT"
    found = uow.payments.by_intent(str(intent))
    order = uow.payments.order_of(found) if found is not None else None
    if found is None or order is None:
        return "UNKNOWN_PAYMENT"
    uow.orders.lock_row(found.order_id)
    payment = uow.payments.lock(found.id)
    assert payment is not None
    ref = pay.PaymentRef(payment.id, payment.order_id, order[1])
    event = pay.dispute_update(
        payment, ref, str(reference), str(status), str(reason), from_minor_units(amount, payment.currency)
    )
    if event is None:
        return "UNCHANGED"
    payment.updated_at = utcnow()
    uow.payments.flush()
    uow.record(event)
    log.warning("payment_disputed", payment_id=str(payment.id), status=payment.dispute_status)
    return event.__class__.__name__


def _round_of(metadata: Any) -> int:
    raw = metadata.get("chargeRound") if isinstance(metadata, dict) else None
    try:
        return int(raw) if raw is not None else 1
    except (TypeError, ValueError):
        return 0


def _apply_refund_event(uow: UnitOfWork, event_type: str, obj: dict[str, Any]) -> str:
    """``refund.updated`` carries a refund; ``charge.refunded`` a charge with its refunds. Each
    refund we know (by its id at the gateway, or the ``refundId`` we gave it) is settled with the
    status the gateway reports; one made outside of us (the dashboard) on a payment we know is
    recorded as a refund of its own, so it reaches the books too."""
    if event_type == pay.REFUND_UPDATED:
        items: list[Any] = [obj]
    else:
        listed = obj.get("refunds")
        items = listed.get("data", []) if isinstance(listed, dict) else []
    outcomes = []
    for item in items:
        if isinstance(item, dict):
            outcomes.append(_apply_gateway_refund(uow, item))
    changed = [o for o in outcomes if o not in ("UNCHANGED", "UNKNOWN_REFUND")]
    return ",".join(changed) if changed else (outcomes[0] if outcomes else "UNCHANGED")


def _apply_gateway_refund(uow: UnitOfWork, item: dict[str, Any]) -> str:
    reference, status = item.get("id"), item.get("status")
    if not isinstance(reference, str) or not isinstance(status, str):
        return "UNKNOWN_REFUND"
    ours = pay.GATEWAY_REFUND_STATUSES.get(status)
    if ours is None:
        return "UNCHANGED"
    failure = item.get("failure_reason")
    refund = uow.payments.refund_by_reference(reference)
    if refund is None:
        metadata = item.get("metadata")
        raw = metadata.get("refundId") if isinstance(metadata, dict) else None
        try:
            refund = uow.payments.get_refund(uuid.UUID(str(raw))) if raw else None
        except ValueError:
            refund = None
    if refund is None:
        intent = item.get("payment_intent")
        payment = uow.payments.by_intent(intent) if isinstance(intent, str) else None
        if payment is None or ours == pay.R_FAILED:
            return "UNKNOWN_REFUND"
        amount = item.get("amount")
        if not isinstance(amount, int) or amount <= 0:
            return "UNKNOWN_REFUND"
        try:
            refund = refunds.request_refund(
                uow, payment.id, from_minor_units(amount, payment.currency), "MADE_AT_GATEWAY", announce=False
            )
        except (InvalidTransition, ValidationFailed):
            return "UNCHANGED"
    changed = refunds.settle_refund(
        uow,
        refund.id,
        ours,
        gateway_reference=reference,
        failure_reason=failure if isinstance(failure, str) else None,
    )
    return f"REFUND_{ours}" if changed else "UNCHANGED"


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
        unrefunded = uow.payments.unrefunded_charges(idle_since=idle_since, limit=SWEEP_BATCH)
        # PENDING refunds: sent again if the gateway never got them (same key: at most one
        # refund), else asked about — a lost webhook only delays. FAILED ones are never retried.
        pending_refunds = uow.payments.stale_refunds(idle_since=idle_since, limit=SWEEP_BATCH)
    queued = {"charges": 0, "refunds": 0}
    try:
        for payment_id in charges:
            send_task(CHARGE_PAYMENT, [str(payment_id)])
            queued["charges"] += 1
        for payment_id in unrefunded:
            send_task(REFUND_PAYMENT, [str(payment_id)])
            queued["refunds"] += 1
        for payment_id, refund_id in pending_refunds:
            send_task(REFUND_PAYMENT, [str(payment_id), str(refund_id)])
            queued["refunds"] += 1
    except BrokerUnavailable as exc:
        log.warning("sweep_interrupted", error=str(exc), **queued)
    if any(queued.values()):
        log.info("payments_swept", **queued)
    return queued


def on_order_placed(event: Event, context: EventContext) -> None:
    """Handler: charge the new order's payment (queued as a task of its own; the worker charges
    in the dispatch instead, see ``charge_on_order_placed``)."""
    assert isinstance(event, OrderPlaced)
    send_task(CHARGE_PAYMENT, [event.payment_id], request_id=context.request_id)


def charge_on_order_placed(settings: ChargeSettings) -> Handler:
    """Handler (what ``on_order_placed`` is in the worker): charge the new order's payment right in
    the event's dispatch, one task per order instead of two. The guarantees are the charge task's:
    the same ``charge_payment`` (idempotent keys, conditional updates, late acknowledgement of the
    dispatch, the sweep for a charge whose dispatch was lost); a charge that must try again later
    (gateway unavailable) becomes a charge task with that countdown, as the task would retry."""

    def charge_now(event: Event, context: EventContext) -> None:
        assert isinstance(event, OrderPlaced)
        outcome = settings.charge(uuid.UUID(event.payment_id))
        if outcome.retry_in is not None:
            send_task(
                CHARGE_PAYMENT, [event.payment_id], countdown=outcome.retry_in, request_id=context.request_id
            )

    charge_now.__name__ = "charge_on_order_placed"
    return charge_now


def on_payment_retried(event: Event, context: EventContext) -> None:
    """Handler: charge the new attempt."""
    assert isinstance(event, PaymentRetried)
    args = (
        [event.payment_id] if event.abandoned_intent is None else [event.payment_id, event.abandoned_intent]
    )
    send_task(CHARGE_PAYMENT, args, request_id=context.request_id)


def on_refund_requested(event: Event, context: EventContext) -> None:
    """Handler: refund the payment (a cancelled paid order, or an admin's request)."""
    assert isinstance(event, RefundRequested)
    args = [event.payment_id] if event.refund_id is None else [event.payment_id, event.refund_id]
    send_task(REFUND_PAYMENT, args, request_id=context.request_id)


def on_order_cancelled(event: Event, context: EventContext) -> None:
    """Handler: a cancellation voided a payment whose last charge attempt got no answer. Its
    stored PaymentIntent is cancelled at once (a confirm still in flight is then refused, or, if
    it won, refunded); with none stored, the charge is looked up once any request in flight has
    ended, and refunded if it went through."""
    assert isinstance(event, OrderCancelled)
    with UnitOfWork() as uow:
        order = uow.orders.get(uuid.UUID(event.order_id))
        payment = order.payment if order is not None else None
        payment_id = payment.id if payment is not None and pay.outcome_unknown(payment) else None
        countdown = 0 if payment is not None and pay.intent_to_void(payment) else LOOKUP_DELAY_SECONDS
    if payment_id is not None:
        send_task(REFUND_PAYMENT, [str(payment_id)], countdown=countdown, request_id=context.request_id)
