"""Operational records: feature toggles and stock reconciliation runs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, DateTime, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.domain.base import Base, new_id, utcnow

RUNNING = "RUNNING"
R_COMPLETED = "COMPLETED"
R_FAILED = "FAILED"


class Feature(Base):
    __tablename__ = "features"
    __table_args__ = (CheckConstraint("rollout_percent BETWEEN 0 AND 100", name="rollout_percent"),)

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Percentage of users an enabled feature is on for (app.domain.rollout); 100 = everyone.
    rollout_percent: Mapped[int] = mapped_column(Integer, default=100, server_default="100")
    description: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class Reconciliation(Base):
    __tablename__ = "reconciliations"
    __table_args__ = (CheckConstraint("status IN ('RUNNING', 'COMPLETED', 'FAILED')", name="status"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=new_id)
    status: Mapped[str] = mapped_column(String(16), default=RUNNING)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    products_checked: Mapped[int] = mapped_column(Integer, default=0)
    orders_expired: Mapped[int] = mapped_column(Integer, default=0)
    discrepancies: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    error: Mapped[str | None] = mapped_column(Text)
