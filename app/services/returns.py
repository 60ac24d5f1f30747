"""Return use cases (SPEC §5.2): ask to return delivered units, list returns, receive or reject them.

Every write locks the order row first, so concurrent requests for the same units are serialised:
the second sees the units the first holds and never returns more than were delivered. Receiving
locks the returned products next (order, then products, as a cancellation does) and puts the
units back through the stock ledger (reason RETURN), so reconciliation finds nothing to correct.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from app.domain.actors import Actor
from app.domain.audit import AuditAction, AuditResource, diff
from app.domain.base import utcnow
from app.domain.errors import FeatureDisabled, NotFound
from app.domain.events import Event
from app.domain.orders import visible_order
from app.domain.returns import Return, ReturnStatus, request_return
from app.log import get_logger
from app.services import features, refunds
from app.services.cancellation import with_request_id
from app.services.dispatch import EventContext
from app.services.idempotency import Claim, Idempotent, Replay, run_idempotently
from app.services.unit_of_work import ReadOnlyUnitOfWork, UnitOfWork, run_in_transaction

log = get_logger(__name__)


@dataclass(frozen=True)
class ReturnRequest:
    lines: Mapping[uuid.UUID, int]
    reason: str
    note: str | None = None


def _require_returns(actor: Actor, feature_ttl: float) -> None:
    """The ``returns`` toggle (on by default): off for this caller → 503 problem, as checkout."""
    if not features.is_enabled(features.RETURNS, ttl=feature_ttl, user_id=actor.user_id):
        raise FeatureDisabled("Returns are temporarily disabled; retry later", retry_after=30)


def create_return(
    actor: Actor,
    order_id: uuid.UUID,
    request: ReturnRequest,
    *,
    window_days: int,
    feature_ttl: float,
    idempotency: Idempotent[Return] | None = None,
) -> Return | Replay:
    """The order's owner (or an admin) asks to return delivered units, at most once per key."""
    _require_returns(actor, feature_ttl)
    actor = with_request_id(actor)

    def transaction(uow: UnitOfWork, claim: Claim[Return] | None) -> Return:
        order = visible_order(actor, uow.orders.lock(order_id))
        ret = request_return(
            order,
            request.lines,
            reason=request.reason,
            note=request.note,
            deliveries=uow.shipments.deliveries(order_id),
            held=uow.returns.held_units(order_id),
            now=utcnow(),
            window_days=window_days,
        )
        uow.returns.add(ret)
        if claim is not None:
            claim.remember(uow, ret)
        uow.commit()
        return ret

    return run_idempotently(
        idempotency, lambda claim: run_in_transaction(lambda uow: transaction(uow, claim))
    )


def list_returns(actor: Actor, order_id: uuid.UUID, *, feature_ttl: float) -> list[Return]:
    """The order's returns, oldest first (its owner or an admin)."""
    _require_returns(actor, feature_ttl)
    with ReadOnlyUnitOfWork() as uow:
        visible_order(actor, uow.orders.find(order_id))
        return uow.returns.for_order(order_id)


def get_return(actor: Actor, order_id: uuid.UUID, return_id: uuid.UUID) -> Return:
    with ReadOnlyUnitOfWork() as uow:
        visible_order(actor, uow.orders.find(order_id))
        ret = uow.returns.get(order_id, return_id)
        if ret is None:
            raise NotFound("The return was not found")
        return ret


def find_return(actor: Actor, return_id: uuid.UUID) -> Return:
    """A return by its id alone (staff: what a return event's webhook carries)."""
    actor.require_staff()
    with ReadOnlyUnitOfWork() as uow:
        ret = uow.returns.find(return_id)
        if ret is None:
            raise NotFound("The return was not found")
        return ret


def decide_return(
    actor: Actor, order_id: uuid.UUID, return_id: uuid.UUID, status: str, *, restock: bool = True
) -> Return:
    """Admin: RECEIVED (units back into stock unless ``restock`` is false; the refund of
    ``refundAmount`` is started) or REJECTED. The current status again changes nothing; any other
    transition is a 409. Not behind the toggle: admins settle returns already asked for."""
    actor.require_staff()
    actor = with_request_id(actor)

    def transaction(uow: UnitOfWork) -> Return:
        order = visible_order(actor, uow.orders.lock(order_id))
        ret = uow.returns.get(order_id, return_id)
        if ret is None:
            raise NotFound("The return was not found")
        was = ret.status
        if status == ReturnStatus.REJECTED:
            ret.reject()
        else:
            products = uow.products.lock_many(item.product_id for item in ret.items)
            movements = ret.receive(order, products, restock=restock, actor=actor, now=utcnow())
            uow.stock_ledger.add_all(movements)
            if was == ReturnStatus.REQUESTED:
                _start_refund(uow, order_id, ret)
        uow.orders.save()
        if ret.status != was:
            uow.audit(
                actor,
                AuditAction.RETURN_REJECTED
                if status == ReturnStatus.REJECTED
                else AuditAction.RETURN_RECEIVED,
                AuditResource.RETURN,
                ret.id,
                diff({"status": was}, {"status": ret.status, "restocked": ret.restocked}),
            )
        uow.commit()
        return ret

    return run_in_transaction(transaction)


def _start_refund(uow: UnitOfWork, order_id: uuid.UUID, ret: Return) -> None:
    """The refund of the returned units at the price paid, through the one refund path
    (``refunds.request_refund``: a PENDING refund sent by the worker after the commit). The return
    becomes REFUNDED when the gateway confirms it (``on_refund_succeeded``). Never more than the
    payment still holds: if an admin already refunded part of it by hand, the rest is refunded;
    if nothing is left, no refund is started and the return stays RECEIVED."""
    payment = uow.orders.lock_payment(order_id)  # order (held), then payment: the usual lock order
    if payment is None:
        return
    amount = min(ret.refund_amount, payment.refundable_amount)
    if amount <= 0:
        log.warning("return_not_refunded", return_id=str(ret.id), reason="nothing left to refund")
        return
    refund = refunds.request_refund(uow, payment.id, amount, reason=f"return {ret.id}")
    ret.refund_id = refund.id


def on_refund_succeeded(event: Event, context: EventContext) -> None:
    """Handler of ``RefundSucceeded``: the return whose refund it is becomes REFUNDED (and records
    ``ReturnRefunded``). Idempotent: a return already REFUNDED is left alone; a refund that is
    not a return's changes nothing."""
    refund_id = uuid.UUID(str(event.refund_id))  # type: ignore[attr-defined]
    with UnitOfWork() as uow:
        ret = uow.returns.by_refund(refund_id)
        if ret is None:
            return
        order = uow.orders.lock(ret.order_id)
        ret = uow.returns.get(ret.order_id, ret.id)  # again, under the order's lock
        if order is None or ret is None:
            return
        if ret.mark_refunded(order, utcnow()):
            uow.orders.save()
            uow.commit()
