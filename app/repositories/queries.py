"""Query pieces every repository list shares: one page of a filtered, ordered select, and LIKE text."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

T = TypeVar("T")


def page_of(session: Session, stmt: Select[tuple[T]], page: int, page_size: int) -> tuple[list[T], int]:
    """Rows ``(page - 1) * page_size`` onwards of ``stmt`` (which carries its own ORDER BY), and how
    many rows ``stmt`` selects in all (counted without the ordering): two statements."""
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    rows = session.scalars(stmt.limit(page_size).offset((page - 1) * page_size))
    return list(rows), int(total)


def like_escaped(text: str) -> str:
    """``text`` matched literally inside a LIKE pattern with ``escape="\\\\"``: ``%`` and ``_`` are
    no wildcards."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
