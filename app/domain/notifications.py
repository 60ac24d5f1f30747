"""Notifications: one per domain event and channel, delivered by the worker.

The delivery rules live here: a send attempt either marks the notification SENT or counts a
failure, which schedules another attempt (exponential backoff with jitter) until
``max_attempts`` is reached and the notification is FAILED.
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.domain.backoff import backoff_delay
from app.domain.base import Base, new_id, utcnow

N_PENDING = "PENDING"
N_SENT = "SENT"
N_FAILED = "FAILED"
CHANNEL_EMAIL = "EMAIL"

NO_RECIPIENT = "no recipient"
# At most this many attempts are kept in ``deliveries`` (the newest): bounded row size.
MAX_DELIVERIES_KEPT = 200


def is_permanent_smtp_code(code: int | None) -> bool:
    """An SMTP reply that no retry can change (RFC 5321 §4.2.1: 5yz is a permanent negative reply);
    4yz (transient) and no reply at all (connection errors) are worth retrying."""
    return code is not None and 500 <= code < 600


# Longest delay between two attempts: also the broker's limit for a countdown.
MAX_RETRY_DELAY_SECONDS = 3600.0


def retry_delay(attempt: int, base: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with "equal jitter": half of ``base * 2**(attempt-1)`` plus a random half.

    Jitter spreads the retries of many notifications that failed together (an SMTP outage), so
    they do not hit the server again at the same instant.
    """
    return backoff_delay(
        attempt, base, cap=MAX_RETRY_DELAY_SECONDS, jitter="equal", rand=(rng or random).random
    )


class Notification(Base):
    __tablename__ = "notifications"
    __table_args__ = (
        CheckConstraint("status IN ('PENDING', 'SENT', 'FAILED')", name="status"),
        # A re-delivered event never creates a second notification on the same channel.
        Index("uq_notifications_event_channel", "event_id", "channel", unique=True),
        Index("ix_notifications_user_id_created_at", "user_id", "created_at"),
        Index("ix_notifications_status_created_at", "status", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("users.id"))
    order_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    event_id: Mapped[int] = mapped_column(BigInteger)
    event: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16), default=CHANNEL_EMAIL)
    recipient: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(255), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default=N_PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When the next delivery attempt is due (PENDING only). A PENDING notification long overdue
    # lost its queued delivery (e.g. Redis restarted): the retry job queues it again.
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The account token whose secret the e-mail carries (derived at delivery: the stored message
    # shows it masked, see app.domain.accounts).
    account_token_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    # Every attempt, oldest first: {"at": ISO-8601, "error": null | text}; kept across rounds.
    deliveries: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, default=list, server_default=text("'[]'::jsonb")
    )
    # The server refused the message for good (5xx): the retry job never queues it again.
    permanent_failure: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))

    @property
    def deliverable(self) -> bool:
        return self.status == N_PENDING and self.recipient is not None

    def _record_attempt(self, now: datetime, error: str | None) -> None:
        # A new list (not an in-place append), so the ORM sees the change of the JSONB value.
        attempt = {"at": now.isoformat(), "error": error}
        self.deliveries = [*(self.deliveries or []), attempt][-MAX_DELIVERIES_KEPT:]

    def mark_sent(self, now: datetime) -> None:
        self._record_attempt(now, None)
        self.status = N_SENT
        self.attempts += 1
        self.sent_at = now
        self.next_attempt_at = None

    def mark_undeliverable(self, error: str) -> None:
        """No attempt can succeed (no recipient): FAILED at once, and never retried."""
        self.status = N_FAILED
        self.last_error = error
        self.next_attempt_at = None

    def record_failure(self, error: str, *, now: datetime, max_attempts: int, delay: float) -> bool:
        """Count a failed attempt; True when another attempt is due in ``delay`` seconds."""
        self.attempts += 1
        self.last_error = error[:1000]
        self._record_attempt(now, self.last_error)
        if self.attempts >= max_attempts:
            self.status = N_FAILED
            self.next_attempt_at = None
            return False
        self.next_attempt_at = now + timedelta(seconds=delay)
        return True

    def record_rejection(self, error: str, *, now: datetime) -> None:
        """The server refused the message for good (SMTP 5xx): FAILED at once, and the retry job
        never queues it again (repeating a bounce is what gets a sender blocklisted)."""
        self.attempts += 1
        self.last_error = error[:1000]
        self._record_attempt(now, self.last_error)
        self.status = N_FAILED
        self.permanent_failure = True
        self.next_attempt_at = None

    def start_new_round(self, now: datetime) -> None:
        """A FAILED notification gets ``max_attempts`` fresh attempts (retry job, admin retry).

        ``attempts`` restarts from 0 so that each round obeys the same limit; ``last_error`` keeps
        the last failure until the next attempt.
        """
        self.status = N_PENDING
        self.attempts = 0
        self.permanent_failure = False  # only an admin's explicit retry starts one after a bounce
        self.next_attempt_at = now
