"""Payments: one per order, charged by the worker through the gateway."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Integer, Numeric, String, Text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.domain.base import Base, new_id, utcnow

PENDING = "PENDING"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
REFUNDED = "REFUNDED"
PAYMENT_STATUSES = (PENDING, COMPLETED, FAILED, REFUNDED)

CREDIT_CARD = "CREDIT_CARD"
DEBIT_CARD = "DEBIT_CARD"
PAYPAL = "PAYPAL"
PAYMENT_METHODS = (CREDIT_CARD, DEBIT_CARD, PAYPAL)


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("status IN ('PENDING', 'COMPLETED', 'FAILED', 'REFUNDED')", name="status"),
        CheckConstraint("method IN ('CREDIT_CARD', 'DEBIT_CARD', 'PAYPAL')", name="method"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=new_id)
    order_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("orders.id"), unique=True
    )
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    method: Mapped[str] = mapped_column(String(16), default=CREDIT_CARD)
    # The gateway's payment method id (e.g. pm_card_visa); not a card number.
    payment_token: Mapped[str] = mapped_column(String(255))
    gateway_reference: Mapped[str | None] = mapped_column(String(255))
    refund_reference: Mapped[str | None] = mapped_column(String(255))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
