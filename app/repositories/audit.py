"""The audit log's queries: append and search. There is deliberately no update and no delete."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain.audit import AuditEntry, AuditFilter
from app.repositories.queries import page_of


class AuditRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, entry: AuditEntry) -> None:
        self.session.add(entry)

    def page(self, where: AuditFilter, page: int, page_size: int) -> tuple[list[AuditEntry], int]:
        """Newest first (ties: the later id first; ids are time-ordered)."""
        conditions = []
        if where.actor_id is not None:
            conditions.append(AuditEntry.actor_id == where.actor_id)
        if where.action is not None:
            conditions.append(AuditEntry.action == where.action)
        if where.resource_type is not None:
            conditions.append(AuditEntry.resource_type == where.resource_type)
        if where.resource_id is not None:
            conditions.append(AuditEntry.resource_id == where.resource_id)
        stmt = select(AuditEntry).where(*conditions).order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
        return page_of(self.session, stmt, page, page_size)
