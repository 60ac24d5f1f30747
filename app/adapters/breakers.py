"""Circuit breakers whose state lives in Redis, so every worker process sees the same circuit.

The one breaker of the project: the payment gateway and SMTP both use it, each under its own name.

``SharedCircuitBreaker`` wraps pybreaker: the state (closed / open / half-open, the failure count,
when it opened) is kept by ``pybreaker.CircuitRedisStorage`` under ``oms:breaker:<name>``. When
Redis cannot be reached, calls go through a process-local in-memory breaker instead (checked again
every few seconds), so a Redis outage never fails the guarded calls by itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import pybreaker
import redis
from redis.exceptions import RedisError

from app.log import get_logger

log = get_logger(__name__)

T = TypeVar("T")
REDIS_TIMEOUT_SECONDS = 0.25
RECHECK_REDIS_SECONDS = 5.0


def state_key(name: str) -> str:
    """The Redis key holding the state of breaker ``name`` (what /metrics reads; pybreaker's layout)."""
    return f"oms:breaker:{name}:pybreaker:state"


class SharedCircuitBreaker:
    def __init__(
        self,
        name: str,
        redis_url: str | None,
        *,
        fail_max: int,
        reset_timeout: float,
        exclude: Iterable[type[BaseException] | Callable[[BaseException], bool]] = (),
        recheck_seconds: float = RECHECK_REDIS_SECONDS,
    ) -> None:
        self.name = name
        self.fail_max = fail_max
        self.reset_timeout = reset_timeout
        self._exclude = list(exclude)
        self._recheck = recheck_seconds
        self._redis = (
            redis.Redis.from_url(
                redis_url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS
            )
            if redis_url
            else None
        )
        self._shared: pybreaker.CircuitBreaker | None = None
        self._local = self._breaker(None)
        self._redis_down_until = 0.0
        self._lock = threading.Lock()

    @property
    def namespace(self) -> str:
        return f"oms:breaker:{self.name}"

    def _breaker(self, storage: pybreaker.CircuitBreakerStorage | None) -> pybreaker.CircuitBreaker:
        return pybreaker.CircuitBreaker(
            fail_max=self.fail_max,
            reset_timeout=self.reset_timeout,
            exclude=self._exclude,
            state_storage=storage,
            name=self.name if storage is not None else f"{self.name}-local",
            # The caller wants the real error of the call that trips the breaker.
            throw_new_error_on_trip=False,
        )

    def _current(self) -> pybreaker.CircuitBreaker:
        """The Redis-backed breaker while Redis answers, else the in-memory one."""
        if self._redis is None:
            return self._local
        with self._lock:
            now = time.monotonic()
            if now < self._redis_down_until:
                return self._local
            try:
                self._redis.ping()
                if self._shared is None:
                    storage = pybreaker.CircuitRedisStorage(
                        pybreaker.STATE_CLOSED, self._redis, namespace=self.namespace
                    )
                    self._shared = self._breaker(storage)
                return self._shared
            except (RedisError, OSError) as exc:
                self._redis_down_until = now + self._recheck
                log.warning("breaker_redis_unavailable", breaker=self.name, error=str(exc))
                return self._local

    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``func`` through the breaker; raises ``pybreaker.CircuitBreakerError`` while open."""
        return self._current().call(func, *args, **kwargs)

    @property
    def current_state(self) -> str:
        """``closed``, ``open`` or ``half-open``, as the breaker in use sees it."""
        return str(self._current().current_state)

    @property
    def uses_redis(self) -> bool:
        return self._current() is not self._local
