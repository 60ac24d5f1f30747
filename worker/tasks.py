"""Thin Celery tasks: each takes ids, calls one service and lets the service decide."""

from __future__ import annotations

from celery import shared_task

from app.adapters import queue
from app.extensions import db
from app.services import outbox


@shared_task(name=queue.DISPATCH_EVENT, acks_late=True, bind=True, max_retries=10)
def dispatch_event(self, outbox_id: int) -> bool:  # type: ignore[no-untyped-def]
    """Run the handlers of one outbox message (idempotent)."""
    try:
        return outbox.handle_message(db.session, outbox_id)
    except queue.BrokerUnavailable as exc:
        raise self.retry(exc=exc, countdown=min(60, 2 ** self.request.retries)) from exc


@shared_task(name=queue.RELAY_OUTBOX, acks_late=True)
def relay_outbox() -> int:
    """Beat: publish outbox messages that were not published after their commit."""
    return outbox.relay_outbox(db.session)
