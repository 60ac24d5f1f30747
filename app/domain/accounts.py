"""Account tokens: single-use secrets e-mailed for a password reset (and, later, e-mail verification).

The secret itself is never stored. It is ``itsdangerous``'s signature of the token row's id under
``SECRET_KEY`` (salted per purpose): the database keeps only its SHA-256 digest, the notification
keeps its body with the secret masked (``TOKEN_MASK``) plus the token's id, and the delivery builds
the e-mail by signing that id again. So the secret exists only inside the e-mail that is sent: not
in an API response, a log line, or a notification body an admin can read. Rotating ``SECRET_KEY``
voids the tokens not yet e-mailed (their e-mail cannot be built any more: they fail, never leak).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta

from itsdangerous import BadSignature, Signer
from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, String
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.domain.base import Base, new_id, utcnow

PURPOSE_PASSWORD_RESET = "PASSWORD_RESET"  # noqa: S105 (a purpose, not a password)
PURPOSE_VERIFY_EMAIL = "VERIFY_EMAIL"
PURPOSES = (PURPOSE_PASSWORD_RESET, PURPOSE_VERIFY_EMAIL)

# The events whose e-mail carries an account token, and the token's purpose.
TOKEN_EVENTS = {
    "PasswordResetRequested": PURPOSE_PASSWORD_RESET,
    "EmailVerificationRequested": PURPOSE_VERIFY_EMAIL,
}
# How long the verification token of a new account stays usable.
EMAIL_VERIFICATION_TTL = timedelta(days=7)

# What the stored notification body says where the e-mail carries the secret.
TOKEN_MASK = "[token sent by e-mail only]"  # noqa: S105 (a placeholder, not a secret)
MAX_TOKEN_LENGTH = 200


class AccountToken(Base):
    __tablename__ = "account_tokens"
    __table_args__ = (
        CheckConstraint("purpose IN ('PASSWORD_RESET', 'VERIFY_EMAIL')", name="purpose"),
        Index("uq_account_tokens_token_hash", "token_hash", unique=True),
        Index("ix_account_tokens_user_id", "user_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("users.id"))
    purpose: Mapped[str] = mapped_column(String(32))
    # SHA-256 (hex) of the secret: a database leak gives no usable token.
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    def usable(self, now: datetime) -> bool:
        return self.used_at is None and now < self.expires_at


def _signer(secret_key: str, purpose: str) -> Signer:
    return Signer(secret_key, salt=f"oms.account-token.{purpose}", digest_method=hashlib.sha256)


def token_secret(secret_key: str, purpose: str, token_id: uuid.UUID) -> str:
    """The secret e-mailed for token ``token_id`` (deterministic: the delivery derives it again)."""
    return _signer(secret_key, purpose).sign(str(token_id)).decode("ascii")


def token_digest(secret: str) -> str:
    """What the database stores of a secret, and what a confirmation looks up."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def signed_token_id(secret_key: str, purpose: str, secret: str) -> uuid.UUID | None:
    """The token id a well-signed secret names (None for a forged or malformed one)."""
    try:
        return uuid.UUID(
            _signer(secret_key, purpose).unsign(secret.encode("utf-8", "surrogatepass")).decode()
        )
    except (BadSignature, ValueError, UnicodeError):
        return None


def new_account_token(
    user_id: uuid.UUID, purpose: str, secret_key: str, ttl: timedelta, now: datetime
) -> tuple[AccountToken, str]:
    """A fresh token row and its secret (to be e-mailed, never stored)."""
    token_id = new_id()
    secret = token_secret(secret_key, purpose, token_id)
    token = AccountToken(
        id=token_id,
        user_id=user_id,
        purpose=purpose,
        token_hash=token_digest(secret),
        created_at=now,
        expires_at=now + ttl,
    )
    return token, secret
