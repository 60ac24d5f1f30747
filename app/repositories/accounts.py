"""Queries over account tokens (password reset)."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.domain.accounts import AccountToken


class AccountTokenRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, token: AccountToken) -> None:
        self.session.add(token)
        self.session.flush()

    def exists(self, token_hash: str) -> bool:
        """Whether a token with this digest exists (the unknown-address path does this read so that
        it costs about what the known-address path does)."""
        stmt = select(AccountToken.id).where(AccountToken.token_hash == token_hash)
        return self.session.scalar(stmt) is not None

    def consume(self, token_hash: str, purpose: str) -> uuid.UUID | None:
        """Mark the token used, atomically: one ``UPDATE … WHERE used_at IS NULL AND expires_at >
        now() RETURNING user_id``. Of two concurrent consumers the second waits on the row lock,
        then re-checks ``used_at`` and finds nothing. Returns the token's user, or None."""
        now = func.now()
        stmt = (
            update(AccountToken)
            .where(
                AccountToken.token_hash == token_hash,
                AccountToken.purpose == purpose,
                AccountToken.used_at.is_(None),
                AccountToken.expires_at > now,
            )
            .values(used_at=now)
            .returning(AccountToken.user_id)
            .execution_options(synchronize_session=False)
        )
        return self.session.scalar(stmt)
