"""Operations use cases: the database's readiness and the figures /metrics reports."""

from __future__ import annotations

from typing import Any

from app.services.unit_of_work import UnitOfWork


def database_ping() -> None:
    """One round trip to Postgres; raises when it cannot be reached."""
    with UnitOfWork() as uow:
        uow.stats.ping()


def outbox_stats() -> dict[str, Any]:
    """The outbox's backlog and lag (read at every scrape: a partial index bounds it)."""
    with UnitOfWork() as uow:
        return uow.stats.outbox()


def status_counts() -> dict[str, dict[str, int]]:
    """Payments and notifications by status (whole-table counts: beat runs this, never a scrape)."""
    with UnitOfWork() as uow:
        return uow.stats.status_counts()
