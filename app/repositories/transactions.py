"""Per-transaction database settings."""

from __future__ import annotations

from functools import cache

from sqlalchemy import TextClause, text
from sqlalchemy.orm import Session, scoped_session

_AUTOCOMMIT_READ = "oms_autocommit_read"


def set_local_lock_timeout(session: Session, milliseconds: int) -> None:
    """``SET LOCAL lock_timeout``: a lock wait longer than this fails fast (55P03) and is retried."""
    session.execute(_set_local_lock_timeout(int(milliseconds)))


@cache
def _set_local_lock_timeout(milliseconds: int) -> TextClause:
    """One statement object per value, so its cache key is computed once (a checkout runs it)."""
    return text(f"SET LOCAL lock_timeout = {milliseconds}")


def begin_read(session: Session) -> bool:
    """Run the session's next statements in autocommit mode: for reads that write nothing.

    Under READ COMMITTED every statement takes its own snapshot anyway, so wrapping reads in a
    transaction buys no consistency; it costs a BEGIN and a ROLLBACK round trip. The connection
    gets its isolation level back when it returns to the pool, so the session's next transaction
    is a real one again. Only when no transaction is open yet: inside one it changes nothing.
    Returns whether the session's statements now run in autocommit mode.
    """
    if isinstance(session, scoped_session):
        session = session()
    if not session.in_transaction():
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        session.info[_AUTOCOMMIT_READ] = True
    return bool(session.info.get(_AUTOCOMMIT_READ))


def end_read(session: Session) -> None:
    """End an autocommit read begun by ``begin_read`` (no statement: there is no transaction), so
    that the session's next transaction is a real one. Entities it loaded are expired."""
    if session.info.pop(_AUTOCOMMIT_READ, False):
        session.rollback()
