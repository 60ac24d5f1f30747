"""The unit of work: one transaction that rolls back unless the service commits.

On commit, the domain events recorded by entities (``entity.events``) or by the service
(``uow.record``) are written to the outbox in the same transaction; after the commit they are
published to the queue at once. If that fails, nothing is lost: the beat relay picks them up.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from sqlalchemy.orm import Session

from app.domain.base import drain_event_sources
from app.domain.events import Event
from app.log import current_request_id, get_logger
from app.repositories.outbox import OutboxRepository
from app.repositories.transactions import begin_read

log = get_logger(__name__)


class UnitOfWork:
    def __init__(
        self, session: Session | None = None, *, relay_after_commit: bool = True, read_only: bool = False
    ) -> None:
        if session is None:
            from app.extensions import db

            session = db.session()
        self.session: Session = session
        self.relay_after_commit = relay_after_commit
        self._events: list[Event] = []
        self.committed = False
        self.outbox_ids: list[int] = []
        if read_only:  # reads that write nothing: no BEGIN/ROLLBACK round trips
            begin_read(session)

    def __enter__(self) -> UnitOfWork:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.committed:
            self.rollback()

    def record(self, event: Event) -> None:
        self._events.append(event)

    def _collect_events(self) -> list[Event]:
        events = list(self._events)
        self._events.clear()
        seen: set[int] = set()
        for obj in [*drain_event_sources(), *self.session.new, *self.session.identity_map.values()]:
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            pending: list[Any] | None = obj.__dict__.pop("_domain_events", None)
            if pending:
                events.extend(pending)
        return events

    def _discard_events(self) -> None:
        self._events.clear()
        for obj in drain_event_sources():
            obj.__dict__.pop("_domain_events", None)

    def flush(self) -> None:
        self.session.flush()

    def commit(self) -> None:
        events = self._collect_events()
        outbox = OutboxRepository(self.session)
        request_id = current_request_id()
        relay = bool(events) and self.relay_after_commit
        # Relayed messages are marked published in this very transaction, before they are: a
        # separate transaction to mark them after the publish cost a checkout 16 % of its CPU.
        # If the publish then fails they are marked unpublished again (the beat relay's work);
        # if the process dies in between, the beat relay publishes them again once they are
        # STALE_AFTER_SECONDS old and still unprocessed. Either way nothing is lost.
        self.outbox_ids = outbox.add_many(
            [(e.name, e.to_payload(), request_id) for e in events], published=relay
        )
        self.session.commit()
        self.committed = True
        if relay:
            from app.services.outbox import publish_committed

            try:
                publish_committed(self.session, self.outbox_ids, request_id)
            except Exception as exc:  # the beat relay will deliver; never fail a committed request
                self.session.rollback()
                log.warning("relay_after_commit_failed", error=f"{type(exc).__name__}: {exc}")

    def rollback(self) -> None:
        self._discard_events()
        self.session.rollback()
