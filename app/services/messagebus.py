"""The observer: which handlers react to which domain event. Handlers must be idempotent."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app.domain import events
from app.services.notifications import notify_customer
from app.services.payments import on_order_cancelled, on_order_placed, on_refund_requested


@dataclass(frozen=True)
class EventContext:
    event_id: int  # the outbox message id: a stable key for "once per event"
    request_id: str | None


Handler = Callable[[events.Event, EventContext], None]

EVENT_HANDLERS: dict[type[events.Event], list[Handler]] = {
    # Money first: a failing notification must not delay a charge or a refund.
    events.OrderPlaced: [on_order_placed, notify_customer],
    events.PaymentCompleted: [notify_customer],
    events.PaymentFailed: [notify_customer],
    events.OrderShipped: [notify_customer],
    events.OrderDelivered: [notify_customer],
    events.OrderCancelled: [on_order_cancelled, notify_customer],
    events.PaymentRefunded: [notify_customer],
    events.RefundRequested: [on_refund_requested],
}
