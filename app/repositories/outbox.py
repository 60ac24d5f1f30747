"""Queries over the transactional outbox."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, bindparam, func, insert, select, text, update
from sqlalchemy.orm import Session

from app.domain.base import utcnow
from app.domain.outbox import OutboxMessage

_OUTBOX = OutboxMessage.__table__
assert isinstance(_OUTBOX, Table)
_INSERT = insert(_OUTBOX).returning(_OUTBOX.c.id, sort_by_parameter_order=True)
_TO_DISPATCH = select(_OUTBOX.c.event_type, _OUTBOX.c.payload, _OUTBOX.c.request_id).where(
    _OUTBOX.c.id == bindparam("id"), _OUTBOX.c.processed_at.is_(None)
)


class OutboxRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add_many(
        self, messages: Sequence[tuple[str, dict[str, Any], str | None]], *, published: bool = False
    ) -> list[int]:
        """New messages (event type, payload, request id) with one plain INSERT; their ids, in order.

        ``published``: their publish is attempted right after the commit (``UnitOfWork.commit``).
        """
        if not messages:
            return []
        now = utcnow()
        rows = [
            {
                "event_type": event_type,
                "payload": payload,
                "request_id": request_id,
                "created_at": now,
                "published_at": now if published else None,
                "publish_attempts": 1 if published else 0,
            }
            for event_type, payload, request_id in messages
        ]
        return list(self.session.scalars(_INSERT, rows if len(rows) > 1 else rows[0]))

    def lock_relayable(self, limit: int, stale_seconds: float) -> list[OutboxMessage]:
        """Lock a batch to relay, skipping rows another relay holds (``FOR UPDATE SKIP LOCKED``).

        Relayable: never published, or published long ago and still not processed (the broker
        lost the message, e.g. Redis restarted without persistence).
        """
        stale_before = func.now() - text(f"interval '{int(stale_seconds)} seconds'")
        stmt = (
            select(OutboxMessage)
            .where(
                OutboxMessage.processed_at.is_(None),
                OutboxMessage.published_at.is_(None) | (OutboxMessage.published_at < stale_before),
            )
            .order_by(OutboxMessage.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list(self.session.scalars(stmt))

    def mark_published(self, ids: Sequence[int]) -> None:
        if ids:
            self.session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(list(ids)))
                .values(
                    published_at=utcnow(),
                    publish_attempts=OutboxMessage.publish_attempts + 1,
                    last_error=None,
                )
            )

    def mark_publish_failed(self, message_id: int, error: str) -> None:
        self.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == message_id)
            .values(publish_attempts=OutboxMessage.publish_attempts + 1, last_error=error[:500])
        )

    def mark_unpublished(self, ids: Sequence[int], error: str) -> None:
        """Messages marked published optimistically whose publish failed: the beat relay's work now."""
        if ids:
            self.session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(list(ids)))
                .values(published_at=None, last_error=error[:500])
            )

    def lock_message(self, message_id: int) -> bool:
        """``SELECT … FOR UPDATE`` one message (serialises the handlers of that one event)."""
        stmt = select(OutboxMessage.id).where(OutboxMessage.id == message_id).with_for_update()
        return self.session.execute(stmt).first() is not None

    def recorded_from(self, event_type: str, source_event_id: int) -> bool:
        """Whether messages of ``event_type`` were recorded by the handler of ``source_event_id``
        (rare events: a scan of that type's messages is fine)."""
        stmt = select(OutboxMessage.id).where(
            OutboxMessage.event_type == event_type,
            OutboxMessage.payload["source_event_id"].astext == str(source_event_id),
        )
        return self.session.execute(stmt.limit(1)).first() is not None

    def get(self, message_id: int) -> OutboxMessage | None:
        return self.session.get(OutboxMessage, message_id)

    def to_dispatch(self, message_id: int) -> tuple[str, dict[str, Any], str | None] | None:
        """(event type, payload, request id) of an unprocessed message; None once processed or
        unknown. One Core SELECT of three columns: a dispatch needs no ORM entity."""
        row = self.session.execute(_TO_DISPATCH, {"id": message_id}).first()
        return (row[0], row[1], row[2]) if row is not None else None

    def mark_processed(self, message_id: int) -> None:
        self.session.execute(
            update(OutboxMessage).where(OutboxMessage.id == message_id).values(processed_at=utcnow())
        )

    def mark_unprocessed(self, message_id: int) -> None:
        """Handled, but a task it queued could not be published: dispatch it again."""
        self.session.execute(
            update(OutboxMessage).where(OutboxMessage.id == message_id).values(processed_at=None)
        )

    def lag(self) -> tuple[int, float]:
        """(unprocessed count, age in seconds of the oldest unprocessed message)."""
        row = self.session.execute(
            select(
                func.count(),
                func.coalesce(func.extract("epoch", func.now() - func.min(OutboxMessage.created_at)), 0),
            ).where(OutboxMessage.processed_at.is_(None))
        ).one()
        return int(row[0]), float(row[1])
