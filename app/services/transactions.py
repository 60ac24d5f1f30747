"""Running a whole transaction again when Postgres reports contention, instead of failing the request."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.domain.errors import ServiceUnavailable
from app.log import get_logger

log = get_logger(__name__)

T = TypeVar("T")

# deadlock_detected, serialization_failure, lock_not_available (our lock_timeout)
CONTENTION_SQLSTATES = {"40P01": "deadlock", "40001": "serialization_failure", "55P03": "lock_timeout"}
DEFAULT_ATTEMPTS = 3
BASE_DELAY_SECONDS = 0.05


def contention_of(exc: BaseException) -> str | None:
    """The kind of contention an error reports, or None for any other error."""
    if isinstance(exc, DBAPIError):
        return CONTENTION_SQLSTATES.get(getattr(exc.orig, "sqlstate", None) or "")
    return None


def retry_on_contention(
    session: Session,
    transaction: Callable[[], T],
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    base_delay: float = BASE_DELAY_SECONDS,
) -> T:
    """Run ``transaction`` (a whole unit of work) up to ``attempts`` times on contention.

    Between attempts: rollback and a short jittered sleep. After the last attempt the caller gets
    ``ServiceUnavailable`` (503 with Retry-After), never a 500.
    """
    for attempt in range(1, attempts + 1):
        try:
            return transaction()
        except DBAPIError as exc:
            kind = contention_of(exc)
            if kind is None:
                raise
            session.rollback()
            log.info("transaction_contention", kind=kind, attempt=attempt)
            if attempt == attempts:
                raise ServiceUnavailable(
                    "The resources are busy; retry shortly", retry_after=1, reason=kind
                ) from exc
            time.sleep(random.uniform(0, base_delay * 2**attempt))
    raise AssertionError("unreachable")
