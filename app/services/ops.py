"""Operations use cases: the database's readiness and the figures /metrics reports."""

from __future__ import annotations

from typing import Any

from app.services.unit_of_work import UnitOfWork


def database_ping() -> None:
    """One round trip to Postgres; raises when it cannot be reached."""
    with UnitOfWork() as uow:
        uow.stats.ping()


def stats_snapshot() -> dict[str, Any]:
    """Payments and notifications by status, and the outbox's lag."""
    with UnitOfWork() as uow:
        return uow.stats.snapshot()
