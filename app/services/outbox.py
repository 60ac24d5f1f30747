"""Relaying outbox messages to the queue, and running their handlers in the worker."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from app.adapters.queue import DISPATCH_EVENT, BrokerUnavailable, send_task
from app.domain.events import Event
from app.log import get_logger
from app.repositories.outbox import OutboxRepository

log = get_logger(__name__)

RELAY_BATCH = 200
# A published message still unprocessed after this long is published again (lost by the broker).
STALE_AFTER_SECONDS = 120


def relay_outbox(session: Session, limit: int = RELAY_BATCH) -> int:
    """The beat relay: publish relayable messages, in id order, in one short transaction; returns
    how many. (Right after a commit, ``publish_committed`` publishes without a transaction.)"""
    repo = OutboxRepository(session)
    published: list[int] = []
    try:
        for message in repo.lock_relayable(limit, STALE_AFTER_SECONDS):
            try:
                send_task(DISPATCH_EVENT, [message.id], request_id=message.request_id)
            except BrokerUnavailable as exc:
                repo.mark_publish_failed(message.id, str(exc))
                break  # the broker is down: the rest would fail too, and slowly
            published.append(message.id)
        repo.mark_published(published)
        session.commit()
    except Exception:
        session.rollback()
        raise
    return len(published)


def publish_committed(session: Session, ids: Sequence[int], request_id: str | None) -> int:
    """Publish messages their own transaction committed as published (``UnitOfWork.commit``).

    No database work when the broker takes them; those it refuses are marked unpublished, in id
    order from the first refusal, for the beat relay. Returns how many were published.
    """
    for done, message_id in enumerate(ids):
        try:
            send_task(DISPATCH_EVENT, [message_id], request_id=request_id)
        except BrokerUnavailable as exc:
            try:
                OutboxRepository(session).mark_unpublished(ids[done:], str(exc))
                session.commit()
            except Exception:
                session.rollback()
                raise
            return done
    return len(ids)


def handle_message(session: Session, message_id: int) -> bool:
    """Run every handler of one outbox message once; False when there was nothing to do."""
    from app.services.messagebus import EVENT_HANDLERS, EventContext

    repo = OutboxRepository(session)
    message = repo.get(message_id)
    if message is None or message.processed_at is not None:
        session.rollback()
        return False
    event = Event.from_payload(message.event_type, message.payload)
    context = EventContext(event_id=message.id, request_id=message.request_id)
    session.rollback()  # handlers run in their own units of work; they are idempotent
    # Every handler gets its turn even if one fails; the message is then redelivered (handlers are
    # idempotent), so one broken handler never starves the others.
    failures: list[Exception] = []
    for handler in EVENT_HANDLERS.get(type(event), []):
        try:
            handler(event, context)
        except Exception as exc:
            session.rollback()
            log.warning(
                "event_handler_failed",
                handler=getattr(handler, "__name__", repr(handler)),
                event_type=message.event_type,
                outbox_id=message_id,
                error=f"{type(exc).__name__}: {exc}",
            )
            failures.append(exc)
    if failures:
        raise failures[0]
    repo.mark_processed(message_id)
    session.commit()
    log.info("event_handled", event_type=event.name, outbox_id=message_id)
    return True
