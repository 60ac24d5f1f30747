"""The audit log's read side (admin). Entries are written by each use case through ``uow.audit``."""

from __future__ import annotations

from app.domain.actors import Actor
from app.domain.audit import AuditEntry, AuditFilter
from app.services.unit_of_work import ReadOnlyUnitOfWork


def list_audit_log(
    actor: Actor, where: AuditFilter, page: int, page_size: int
) -> tuple[list[AuditEntry], int]:
    """A page of entries matching every given filter, newest first."""
    actor.require_staff()
    with ReadOnlyUnitOfWork() as uow:
        return uow.audit_log.page(where, page, page_size)
