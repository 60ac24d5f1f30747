"""Declarative base for the typed SQLAlchemy entities, with event recording."""

from __future__ import annotations

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
    """Entities record domain events in ``self.events``; the unit of work collects them from the
    aggregates its repositories handed out, and writes them to the outbox on commit."""

    metadata = MetaData(naming_convention=NAMING)

    @property
    def events(self) -> list[Any]:
        # Entities loaded from the database never run __init__, so the list is created lazily.
        pending = self.__dict__.get("_domain_events")
        if pending is None:
            pending = self.__dict__["_domain_events"] = []
        return pending  # type: ignore[no-any-return]
