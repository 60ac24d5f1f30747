"""Declarative base for the typed SQLAlchemy entities, with event recording."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase
from uuid6 import uuid7

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_id() -> uuid.UUID:
    """A time-ordered UUID (v7): unique, sortable by creation, index-friendly."""
    return uuid.UUID(bytes=uuid7().bytes)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Entities record domain events in ``self.events``; the unit of work collects them."""

    metadata = MetaData(naming_convention=NAMING)

    @property
    def events(self) -> list[Any]:
        # Entities loaded from the database never run __init__, so the list is created lazily.
        pending = self.__dict__.get("_domain_events")
        if pending is None:
            pending = self.__dict__["_domain_events"] = []
            # The session holds clean entities weakly; keep this one until the unit of work has
            # collected its events, so an event is never lost with an unreferenced entity.
            _event_sources().append(self)
        return pending  # type: ignore[no-any-return]


_local = threading.local()


def _event_sources() -> list[Base]:
    sources: list[Base] | None = getattr(_local, "sources", None)
    if sources is None:
        sources = _local.sources = []
    return sources


def drain_event_sources() -> list[Base]:
    """Entities of this thread that recorded events since the last drain (the unit of work's job)."""
    sources = _event_sources()
    drained = list(sources)
    sources.clear()
    return drained
