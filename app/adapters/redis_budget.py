"""One shared budget for all Redis work on a request path: about a second, whatever the calls.

A hung Redis (it accepts connections and never answers: stopped, swapping, overloaded) would make
each Redis call of a request wait for its own socket timeout: the rate limiter's read, its
header update, the publish after commit — three seconds for one ``POST /orders``. Two rules bound
that instead:

- **a per-request deadline**: the web process opens a budget of ``REQUEST_BUDGET_SECONDS`` when a
  request starts; every Redis read made through ``BudgetedConnection`` (the limiter's client) waits
  at most what is left of it, and none starts once it is spent;
- **fail fast once Redis is seen hung**: a Redis timeout on a request path marks Redis unavailable
  for ``RECHECK_SECONDS`` in this process; meanwhile request-path Redis work is skipped at once
  (the limiter uses its in-memory fallback, publishing is left to the outbox relay), and the first
  request after that window tries Redis again.

Outside a request (worker, beat, CLI) nothing changes: no deadline, no skipping.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Any

import redis

REQUEST_BUDGET_SECONDS = 1.0
RECHECK_SECONDS = 5.0

_deadline: ContextVar[float | None] = ContextVar("oms_redis_deadline", default=None)
_state = {"down_until": 0.0}


class RedisBudgetExceeded(redis.ConnectionError):
    """Redis work skipped: the request's budget is spent or Redis was just seen hung."""


def start_request_budget(seconds: float = REQUEST_BUDGET_SECONDS) -> None:
    _deadline.set(time.monotonic() + seconds)


def end_request_budget() -> None:
    _deadline.set(None)


def on_request_path() -> bool:
    return _deadline.get() is not None


def remaining() -> float | None:
    """Seconds left for Redis in this request; None outside a request."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


def mark_unavailable() -> None:
    """Redis timed out: request paths skip it for RECHECK_SECONDS."""
    _state["down_until"] = time.monotonic() + RECHECK_SECONDS


def mark_available() -> None:
    _state["down_until"] = 0.0


def skip_reason() -> str | None:
    """Why request-path Redis work should not even start now (None: go ahead)."""
    left = remaining()
    if left is None:
        return None
    if time.monotonic() < _state["down_until"]:
        return "Redis was seen hung moments ago"
    if left <= 0:
        return "the request's Redis budget is spent"
    return None


def check() -> None:
    reason = skip_reason()
    if reason:
        raise RedisBudgetExceeded(reason)


class BudgetedConnection(redis.Connection):
    """A redis-py connection whose every wait on a request path fits the request's budget."""

    def connect(self) -> None:
        check()
        try:
            super().connect()
        except (TimeoutError, redis.TimeoutError):
            if on_request_path():
                mark_unavailable()
            raise

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        check()
        left = remaining()
        sock = getattr(self, "_sock", None)
        if left is None or sock is None:
            return super().read_response(*args, **kwargs)
        sock.settimeout(max(0.001, min(left, self.socket_timeout or left)))
        try:
            return super().read_response(*args, **kwargs)
        except (TimeoutError, redis.TimeoutError):
            mark_unavailable()
            raise
        finally:
            if self._sock is not None:
                self._sock.settimeout(self.socket_timeout)
