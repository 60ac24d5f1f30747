"""The audit log: who changed what, written in the transaction of the change, never altered.

An entry is ``{actor, action, resource, request id, changes, at}``; ``changes`` holds the fields
that changed, by their API name, as ``{field: {"old": …, "new": …}}``. The table refuses UPDATE and
DELETE (a trigger, migration 0015), and no code path issues them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import DateTime, Index, String
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.domain.base import Base, new_id, utcnow


class AuditAction(StrEnum):
    """What an admin (or the account holder, for an erasure) did. Adding one is one line."""

    PRODUCT_CREATED = "PRODUCT_CREATED"
    PRODUCT_UPDATED = "PRODUCT_UPDATED"
    STOCK_MOVEMENT_RECORDED = "STOCK_MOVEMENT_RECORDED"
    FEATURE_CHANGED = "FEATURE_CHANGED"
    REFUND_REQUESTED = "REFUND_REQUESTED"
    USER_ERASED = "USER_ERASED"
    ORDER_STATUS_CHANGED = "ORDER_STATUS_CHANGED"
    ORDER_DELETED = "ORDER_DELETED"
    WEBHOOK_CREATED = "WEBHOOK_CREATED"
    WEBHOOK_UPDATED = "WEBHOOK_UPDATED"
    WEBHOOK_DELETED = "WEBHOOK_DELETED"
    WEBHOOK_SECRET_ROTATED = "WEBHOOK_SECRET_ROTATED"  # noqa: S105 (an action name)
    WEBHOOK_DELIVERY_RETRIED = "WEBHOOK_DELIVERY_RETRIED"
    SHIPMENT_CREATED = "SHIPMENT_CREATED"
    SHIPMENT_DELIVERED = "SHIPMENT_DELIVERED"
    RETURN_RECEIVED = "RETURN_RECEIVED"
    RETURN_REJECTED = "RETURN_REJECTED"
    USER_ROLE_CHANGED = "USER_ROLE_CHANGED"


class AuditResource(StrEnum):
    PRODUCT = "PRODUCT"
    FEATURE = "FEATURE"
    ORDER = "ORDER"
    PAYMENT = "PAYMENT"
    USER = "USER"
    WEBHOOK = "WEBHOOK"
    SHIPMENT = "SHIPMENT"
    RETURN = "RETURN"


Changes = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class AuditFilter:
    """What ``GET /admin/audit-log`` narrows to (every given filter must match)."""

    actor_id: uuid.UUID | None = None
    action: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None


def _plain(value: Any) -> Any:
    """A JSON value for ``changes`` (money stays a number, ids and times become strings)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, uuid.UUID | datetime):
        return value.isoformat() if isinstance(value, datetime) else str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_plain(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    return value


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> Changes:
    """``{field: {old, new}}`` of the fields whose value differs (a field missing on one side is None)."""
    changes: Changes = {}
    for field in dict.fromkeys([*before, *after]):
        old, new = _plain(before.get(field)), _plain(after.get(field))
        if old != new:
            changes[field] = {"old": old, "new": new}
    return changes


def created(values: Mapping[str, Any]) -> Changes:
    """A creation: every field goes from None to its value."""
    return diff({}, values)


class AuditEntry(Base):
    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_resource", "resource_type", "resource_id", "at"),
        Index("ix_audit_log_actor_id_at", "actor_id", "at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=new_id)
    actor_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    actor_role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[str] = mapped_column(String(128))
    request_id: Mapped[str | None] = mapped_column(String(128))
    changes: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
