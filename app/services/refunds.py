"""The one refund path: every refund — an admin's, a return's, a cancelled paid order's — is a
``refunds`` row created here and settled here.

Both functions work inside the caller's unit of work and do not commit, so a use case (the admin's
refund endpoint, the returns feature, the payments worker, the gateway's webhook) makes a refund
part of its own transaction:

- ``request_refund(uow, payment_id, amount, reason)`` checks what may still be refunded, adds a
  PENDING refund and records ``RefundRequested(refund_id=…)``; after the commit the worker sends
  it to the gateway under its own idempotency key (``refund-<refundId>``).
- ``settle_refund(uow, refund_id, status, …)`` records what the gateway says of a refund (its
  answer, a webhook, or the sweep's poll): monotonic (PENDING → SUCCEEDED | FAILED, and
  SUCCEEDED → FAILED when the gateway fails a refund after it succeeded), then the payment's
  ``status`` from the SUCCEEDED refunds (PARTIALLY_REFUNDED, REFUNDED), its events
  (``RefundSucceeded``, ``RefundFailed`` — the admins are e-mailed —, ``PaymentPartiallyRefunded``,
  ``PaymentRefunded``) and, for a full refund of an order not shipped, its cancellation
  (``PAYMENT_REFUNDED``).

Locks: the order row, then the payment, then its refunds — the order ``apply_cancellation`` takes.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from app.domain import payments as pay
from app.domain.actors import SYSTEM
from app.domain.base import new_id, utcnow
from app.domain.errors import NotFound
from app.domain.events import RefundRequested
from app.domain.orders import PAYMENT_REFUNDED, PLACED
from app.domain.payments import Payment, Refund
from app.log import get_logger
from app.services.cancellation import apply_cancellation
from app.services.unit_of_work import UnitOfWork

log = get_logger(__name__)

# ``reason`` is free text for the books (at most this long).
MAX_REASON_LENGTH = 500


def _lock_payment(uow: UnitOfWork, payment_id: uuid.UUID) -> tuple[Payment, uuid.UUID | None]:
    payment = uow.payments.get(payment_id)
    if payment is None:
        raise NotFound("The payment was not found")
    uow.orders.lock_row(payment.order_id)
    locked = uow.payments.lock(payment_id)
    assert locked is not None
    order = uow.payments.order_of(locked)
    return locked, order[1] if order is not None else None


def request_refund(
    uow: UnitOfWork,
    payment_id: uuid.UUID,
    amount: Decimal | None = None,
    reason: str | None = None,
    *,
    announce: bool = True,
) -> Refund:
    """Start a refund of ``amount`` (default: all that is still refundable) of a payment, inside
    the caller's unit of work (it does not commit). Returns the PENDING refund, already flushed
    (its ``id`` is known).

    Raises ``ValidationFailed`` (422) for an amount ≤ 0; ``InvalidTransition`` (409) when the
    payment took no money or less is left to refund than asked (what is still refundable: the
    amount minus SUCCEEDED and PENDING refunds); ``NotFound`` without such a payment.
    ``announce``: record ``RefundRequested`` so the worker sends the refund after the commit (the
    worker itself, about to send it, passes False; the sweep sends any it missed).
    """
    payment, user_id = _lock_payment(uow, payment_id)
    to_refund = pay.refund_amount(payment, amount)
    now = utcnow()
    refund = Refund(
        id=new_id(),
        payment_id=payment.id,
        amount=to_refund,
        status=pay.R_PENDING,
        reason=(reason or None) and reason[:MAX_REASON_LENGTH],
        attempts=0,
        created_at=now,
        updated_at=now,
    )
    uow.payments.add_refund(refund)
    if announce:
        uow.record(
            RefundRequested(
                order_id=str(payment.order_id),
                user_id=str(user_id),
                payment_id=str(payment.id),
                refund_id=str(refund.id),
            )
        )
    log.info("refund_requested", payment_id=str(payment.id), refund_id=str(refund.id), amount=str(to_refund))
    return refund


def settle_refund(
    uow: UnitOfWork,
    refund_id: uuid.UUID,
    status: str,
    *,
    gateway_reference: str | None = None,
    failure_reason: str | None = None,
) -> bool:
    """Record the gateway's word on a refund (``status``: ours, PENDING/SUCCEEDED/FAILED), inside
    the caller's unit of work. True when something changed. A PENDING answer only stores the
    gateway's reference (the refund is then followed by webhook or poll)."""
    refund = uow.payments.get_refund(refund_id)
    if refund is None:
        return False
    payment, user_id = _lock_payment(uow, refund.payment_id)
    refund = next(r for r in payment.refunds if r.id == refund_id)
    changed = False
    if gateway_reference is not None and refund.gateway_reference is None:
        refund.gateway_reference = gateway_reference
        changed = True
    step = pay.refund_step(refund.status, status)
    if step is None:
        if changed:
            refund.updated_at = utcnow()
        return changed
    refund.status = step
    refund.failure_reason = (failure_reason or "REFUND_FAILED").upper() if step == pay.R_FAILED else None
    refund.updated_at = utcnow()
    before = payment.status
    after = pay.status_after_refunds(payment)
    if after != before:
        payment.status = after
        payment.updated_at = utcnow()
        if after == pay.REFUNDED and refund.gateway_reference is not None:
            # ``refundReference``: the refund that completed it (release 1's single refund).
            payment.refund_reference = refund.gateway_reference
    ref = pay.PaymentRef(payment.id, payment.order_id, user_id)
    for event in pay.refund_events(ref, refund, before, after, payment.refunded_amount):
        uow.record(event)
    uow.payments.flush()
    log.info(
        "refund_settled",
        payment_id=str(payment.id),
        refund_id=str(refund.id),
        status=step,
        payment_status=after,
        failure_reason=refund.failure_reason,
    )
    if after == pay.REFUNDED and before != pay.REFUNDED:
        order = uow.orders.lock(payment.order_id)
        if order is not None and order.status == PLACED and not order.units_shipped:
            apply_cancellation(uow, payment.order_id, SYSTEM, PAYMENT_REFUNDED)
    return True
