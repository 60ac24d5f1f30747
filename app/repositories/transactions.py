"""Per-transaction database settings."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session


def set_local_lock_timeout(session: Session, milliseconds: int) -> None:
    """``SET LOCAL lock_timeout``: a lock wait longer than this fails fast (55P03) and is retried."""
    session.execute(text(f"SET LOCAL lock_timeout = {int(milliseconds)}"))
