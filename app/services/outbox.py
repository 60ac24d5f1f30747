"""Publishing committed outbox messages to the queue: the bottom of the service layer.

It knows the broker and nothing of the database: the unit of work that committed the messages
says what to do with the ones the broker refuses (``on_refused``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from app.adapters.queue import DISPATCH_EVENT, BrokerUnavailable, send_task

# A published message still unprocessed after this long is published again (lost by the broker).
STALE_AFTER_SECONDS = 120


def publish_committed(
    ids: Sequence[int], request_id: str | None, *, on_refused: Callable[[list[int], str], None]
) -> int:
    """Publish messages their own transaction committed as published (``UnitOfWork.commit``).

    No database work when the broker takes them; from the first refusal on, the rest go to
    ``on_refused`` (marked unpublished, in id order, for the beat relay). Returns how many were
    published.
    """
    for done, message_id in enumerate(ids):
        try:
            send_task(DISPATCH_EVENT, [message_id], request_id=request_id)
        except BrokerUnavailable as exc:
            on_refused(list(ids[done:]), str(exc))
            return done
    return len(ids)
