"""The observer: which handlers react to which domain event. Handlers must be idempotent."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app.domain import events


@dataclass(frozen=True)
class EventContext:
    event_id: int  # the outbox message id: a stable key for "once per event"
    request_id: str | None


Handler = Callable[[events.Event, EventContext], None]

EVENT_HANDLERS: dict[type[events.Event], list[Handler]] = {
    events.OrderPlaced: [],
    events.PaymentCompleted: [],
    events.PaymentFailed: [],
    events.OrderShipped: [],
    events.OrderDelivered: [],
    events.OrderCancelled: [],
    events.PaymentRefunded: [],
    events.RefundRequested: [],
}
