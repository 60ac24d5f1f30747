"""Queries over users (and the one cart query that erasing an account needs)."""

from __future__ import annotations

import uuid
from typing import NamedTuple

from sqlalchemy import Connection, bindparam, delete, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from app.domain.carts import Cart, CartItem
from app.domain.users import ROLE_ADMIN, User, email_key
from app.repositories.queries import like_escaped, page_of
from app.repositories.rows import table_of

_USERS = table_of(User)
# Every authenticated request runs it: built once, over the table (no ORM layer).
_TOKEN_STATE = select(_USERS.c.token_version, _USERS.c.deleted_at, _USERS.c.role).where(
    _USERS.c.id == bindparam("user_id")
)


class TokenState(NamedTuple):
    token_version: int
    deleted: bool
    role: str


def token_state_of(connection: Connection | Session, user_id: uuid.UUID) -> TokenState | None:
    """What an access token of this user depends on, in one statement; None for no such user."""
    row = connection.execute(_TOKEN_STATE, {"user_id": user_id}).first()
    return None if row is None else TokenState(row.token_version, row.deleted_at is not None, row.role)


class UserRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def admin_ids(self) -> list[uuid.UUID]:
        """The ids of the active admins (who get operational alerts)."""
        stmt = select(User.id).where(User.role == ROLE_ADMIN, User.deleted_at.is_(None)).order_by(User.id)
        return list(self.session.scalars(stmt))

    def add(self, user: User) -> None:
        """Insert the user now (flush): the unique e-mail index decides between concurrent sign-ups,
        and ``IntegrityError`` surfaces here."""
        self.session.add(user)
        self.session.flush()

    def get_active(self, user_id: uuid.UUID) -> User | None:
        """The user unless the account was deleted."""
        stmt = select(User).where(User.id == user_id, User.deleted_at.is_(None))
        return self.session.scalars(stmt).first()

    def lock_active(self, user_id: uuid.UUID) -> User | None:
        """``SELECT … FOR UPDATE`` a live account (serialises concurrent updates and deletion)."""
        stmt = (
            select(User)
            .where(User.id == user_id, User.deleted_at.is_(None))
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return self.session.scalars(stmt).first()

    def by_email(self, email: str, *, lock: bool = False) -> User | None:
        """The account of this address by the one comparison rule (``email_key``, its unique index)."""
        stmt = select(User).where(User.email_key == email_key(email))
        if lock:
            stmt = stmt.with_for_update().execution_options(populate_existing=True)
        return self.session.scalars(stmt).first()

    def empty_cart(self, user_id: uuid.UUID) -> int:
        """Delete every line of the user's cart (the cart row itself keeps its id); returns how many."""
        cart_ids = select(Cart.id).where(Cart.user_id == user_id)
        result = self.session.execute(delete(CartItem).where(CartItem.cart_id.in_(cart_ids)))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def lock_live_admins(self) -> set[uuid.UUID]:
        """Lock every live admin row, in id order, and return their ids. A role change takes these
        locks before the target's own, so two admins demoting each other at once are serialised
        (in one lock order: no deadlock) and the second sees the first's change."""
        stmt = (
            select(User.id)
            .where(User.role == ROLE_ADMIN, User.deleted_at.is_(None))
            .order_by(User.id)
            .with_for_update()
        )
        return set(self.session.scalars(stmt).all())

    def page(self, *, q: str | None, role: str | None, page: int, page_size: int) -> tuple[list[User], int]:
        """Live accounts whose name or e-mail contains ``q`` (case-insensitively), newest first."""
        conditions: list[ColumnElement[bool]] = [User.deleted_at.is_(None)]
        if role is not None:
            conditions.append(User.role == role)
        if q:
            conditions.append(
                or_(
                    User.name.ilike(f"%{like_escaped(q)}%", escape="\\"),
                    User.email_key.like(f"%{like_escaped(email_key(q))}%", escape="\\"),
                )
            )
        stmt = select(User).where(*conditions).order_by(User.created_at.desc(), User.id.desc())
        return page_of(self.session, stmt, page, page_size)
