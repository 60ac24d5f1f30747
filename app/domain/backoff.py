"""Exponential backoff: the one rule for every retry pause (charges, refunds, e-mails, contention)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Literal

Jitter = Literal["full", "equal", "none"]


def backoff_delay(
    attempt: int,
    base: float,
    *,
    cap: float = float("inf"),
    jitter: Jitter = "full",
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after attempt number ``attempt`` (from 1): ``base * 2**(attempt-1)``, capped.

    Jitter spreads the retries of many callers that failed together: ``full`` waits a random share
    of the ceiling, ``equal`` half of it plus a random half (never retries at once), ``none`` the
    ceiling itself.
    """
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    if jitter == "none":
        return ceiling
    if jitter == "equal":
        return ceiling / 2 + ceiling / 2 * rand()
    return ceiling * rand()
