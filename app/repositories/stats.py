"""Aggregate counts for metrics."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from app.domain.notifications import Notification
from app.domain.payments import Payment
from app.repositories.outbox import OutboxRepository


class StatsRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def ping(self) -> None:
        """One round trip (readiness)."""
        self.session.execute(text("SELECT 1"))

    def status_counts(self) -> dict[str, dict[str, int]]:
        """Payments and notifications by status: whole-table counts, run by beat, never per scrape."""
        payments: dict[str, int] = dict(
            self.session.execute(select(Payment.status, func.count()).group_by(Payment.status)).tuples().all()
        )
        notifications: dict[str, int] = dict(
            self.session.execute(select(Notification.status, func.count()).group_by(Notification.status))
            .tuples()
            .all()
        )
        return {"payments": payments, "notifications": notifications}

    def outbox(self) -> dict[str, Any]:
        pending, lag = OutboxRepository(self.session).lag()
        return {"outbox_pending": pending, "outbox_lag_seconds": lag}
