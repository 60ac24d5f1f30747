"""Users: customers and admins."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import CheckConstraint, DateTime, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column, validates

from app.domain.base import Base, new_id, utcnow
from app.domain.errors import LastAdmin

ROLE_CUSTOMER = "customer"
ROLE_ADMIN = "admin"
ROLES = (ROLE_CUSTOMER, ROLE_ADMIN)

MIN_PASSWORD_LENGTH = 8
# argon2 hashes any length, but a megabyte "password" is a cheap way to burn CPU.
MAX_PASSWORD_LENGTH = 256
MAX_EMAIL_LENGTH = 320
ERASED_NAME = "Deleted user"


class InvalidEmail(ValueError):
    """The text is not a usable e-mail address."""


def normalise_email(value: str) -> str:
    """The address as stored: syntax checked, domain lower-cased (no DNS lookup).

    Uniqueness is case-insensitive on the whole address (``lower(email)`` unique index).
    """
    if len(value) > MAX_EMAIL_LENGTH:
        raise InvalidEmail(f"At most {MAX_EMAIL_LENGTH} characters.")
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidEmail(str(exc)) from exc


def email_key(value: str) -> str:
    """The one rule by which two addresses are the same account: the address as stored (domain
    lower-cased), Unicode case-folded (``str.casefold``: ``İnci`` and ``STRASSE``/``straße`` fold
    the way Unicode says, where Python's and Postgres' ``lower()`` disagree). Text that is not a
    valid address folds as typed, so a lookup simply finds nothing."""
    try:
        value = normalise_email(value)
    except InvalidEmail:
        value = value.strip()
    return value.casefold()


def password_problem(password: str) -> str | None:
    """Why a new password is not acceptable, or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"At least {MIN_PASSWORD_LENGTH} characters."
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"At most {MAX_PASSWORD_LENGTH} characters."
    return None


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("role IN ('customer', 'admin')", name="role"),
        # Kept for the previous release during a rolling deploy (it matches on lower(email));
        # uq_users_email_key is the rule now. Erased (deleted) users have a NULL email.
        Index("uq_users_email_lower", text("lower(email)"), unique=True),
        Index("uq_users_email_key", "email_key", unique=True),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=new_id)
    email: Mapped[str | None] = mapped_column(String(320))
    # email_key(email): what logins and uniqueness compare (set with the email, below).
    email_key: Mapped[str | None] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(Text)
    address: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    role: Mapped[str] = mapped_column(String(16), default=ROLE_CUSTOMER, server_default=ROLE_CUSTOMER)
    # Bumped to invalidate every token issued before (deletion, password change).
    token_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When the owner confirmed the address with the e-mailed token (None: not yet).
    email_verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    @validates("email")
    def _keep_email_key(self, _key: str, value: str | None) -> str | None:
        self.email_key = email_key(value) if value is not None else None
        return value

    @property
    def is_admin(self) -> bool:
        return self.role == ROLE_ADMIN

    @property
    def email_verified(self) -> bool:
        return self.email_verified_at is not None

    @property
    def is_active(self) -> bool:
        return self.deleted_at is None

    def revoke_tokens(self) -> None:
        """Every access token issued before now stops working (they carry the old version)."""
        self.token_version = (self.token_version or 1) + 1

    def change_password(self, password_hash: str) -> None:
        self.password_hash = password_hash
        self.revoke_tokens()

    def change_role(self, role: str, *, other_live_admins: int) -> bool:
        """Make the account a ``customer`` or an ``admin``; returns whether it changed.

        ``other_live_admins`` counts the live admin accounts besides this one: the last admin
        cannot step down (nobody could promote anyone again but through the CLI). Authorization
        reads the role from the database at every request, so no token needs revoking."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        if role == self.role:
            return False
        if self.is_admin and other_live_admins == 0:
            raise LastAdmin("The last admin account cannot give up its role")
        self.role = role
        return True

    def erase(self, now: datetime) -> None:
        """Delete the account: personal data gone, login and tokens disabled; the row stays
        because orders and payments still reference it (kept for the books)."""
        self.name = ERASED_NAME
        self.email = None
        self.address = None
        self.password_hash = None
        self.revoke_tokens()
        self.deleted_at = now
