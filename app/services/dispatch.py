"""The observer's machinery: the handler contract, the beat relay and running a message's handlers.

Which handlers react to which event is decided elsewhere (``app.services.handlers``); dispatch
gets that registry as an argument, so a handler module can import ``EventContext`` without
importing every other handler.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from app.adapters.queue import DISPATCH_EVENT, BrokerUnavailable, send_task
from app.domain.events import Event
from app.log import get_logger
from app.services.outbox import STALE_AFTER_SECONDS
from app.services.unit_of_work import UnitOfWork

log = get_logger(__name__)

RELAY_BATCH = 200


@dataclass(frozen=True)
class EventContext:
    event_id: int  # the outbox message id: a stable key for "once per event"
    request_id: str | None


Handler = Callable[[Event, EventContext], None]
HandlerRegistry = Mapping[type[Event], Sequence[Handler]]


def relay_outbox(limit: int = RELAY_BATCH) -> int:
    """The beat relay: publish relayable messages, in id order, in one short transaction; returns
    how many. (Right after a commit, the unit of work publishes without a transaction.)"""
    published: list[int] = []
    with UnitOfWork(relay_after_commit=False) as uow:
        for message in uow.outbox.lock_relayable(limit, STALE_AFTER_SECONDS):
            try:
                send_task(DISPATCH_EVENT, [message.id], request_id=message.request_id)
            except BrokerUnavailable as exc:
                uow.outbox.mark_publish_failed(message.id, str(exc))
                break  # the broker is down: the rest would fail too, and slowly
            published.append(message.id)
        uow.outbox.mark_published(published)
        uow.commit()
    return len(published)


def handle_message(message_id: int, handlers: HandlerRegistry) -> bool:
    """Run every handler of one outbox message once; False when there was nothing to do."""
    with UnitOfWork(relay_after_commit=False) as uow:
        message = uow.outbox.get(message_id)
        if message is None or message.processed_at is not None:
            return False
        event = Event.from_payload(message.event_type, message.payload)
        context = EventContext(event_id=message.id, request_id=message.request_id)
        event_type = message.event_type
    # Handlers run in their own units of work (they are idempotent). Every handler gets its turn
    # even if one fails; the message is then redelivered, so one broken handler never starves
    # the others.
    failures: list[Exception] = []
    for handler in handlers.get(type(event), []):
        try:
            handler(event, context)
        except Exception as exc:
            log.warning(
                "event_handler_failed",
                handler=getattr(handler, "__name__", repr(handler)),
                event_type=event_type,
                outbox_id=message_id,
                error=f"{type(exc).__name__}: {exc}",
            )
            failures.append(exc)
    if failures:
        raise failures[0]
    with UnitOfWork(relay_after_commit=False) as uow:
        uow.outbox.mark_processed(message_id)
        uow.commit()
    log.info("event_handled", event_type=event.name, outbox_id=message_id)
    return True
