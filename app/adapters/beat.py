"""One beat schedules at a time: a second beat process stands by until the first one stops.

Beat is deployed as a single process (docs/deploy.md), and every periodic job is idempotent, so two
beats would only double the load. This lock makes a mistaken second beat (``ps:scale beat=2``, an
overlapping restart) a standby instead: it sends nothing while another beat holds the lock in
Redis, and takes over within ``LEADER_TTL_SECONDS`` when that beat dies, or at once when it stops.

Redis is the broker: while it is unreachable no beat can publish anyway, so losing the lock then
costs nothing.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import redis
from celery.beat import PersistentScheduler

from app.log import get_logger

log = get_logger(__name__)

LEADER_KEY = "oms:beat:leader"
# Renewed at every tick (at most beat_max_loop_interval = 5 s apart).
LEADER_TTL_SECONDS = 30.0
STANDBY_CHECK_SECONDS = 5.0

# Renew our own lock, or take a free one; 1 when we hold it afterwards.
_ACQUIRE_OR_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('pexpire', KEYS[1], ARGV[2])
  return 1
end
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class LeaderLock:
    """A lock in Redis that one holder renews; it expires ``ttl`` seconds after its last renewal."""

    def __init__(self, client: redis.Redis, key: str = LEADER_KEY, ttl: float = LEADER_TTL_SECONDS) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = max(1, int(ttl * 1000))
        self.token = uuid.uuid4().hex

    def hold(self) -> bool:
        """Take or renew the lock; False when another holds it or Redis does not answer."""
        try:
            return bool(self.client.eval(_ACQUIRE_OR_RENEW, 1, self.key, self.token, str(self.ttl_ms)))
        except redis.RedisError:
            return False

    def release(self) -> None:
        """Give the lock up if we hold it, so a standby takes over at its next check."""
        with contextlib.suppress(redis.RedisError):  # else it expires by itself
            self.client.eval(_RELEASE, 1, self.key, self.token)


class SingleBeatScheduler(PersistentScheduler):  # type: ignore[misc]
    """Celery's file-backed scheduler, active only while it holds the leader lock."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        client = redis.Redis.from_url(self.app.conf.broker_url, socket_connect_timeout=1, socket_timeout=1)
        self.leader = LeaderLock(client)
        self.leading: bool | None = None  # unknown until the first tick logs which it is

    def tick(self, *args: Any, **kwargs: Any) -> float:
        holding = self.leader.hold()
        if holding != self.leading:
            self.leading = holding
            log.info("beat_leading" if holding else "beat_standby", lock=LEADER_KEY)
        if not holding:
            return STANDBY_CHECK_SECONDS
        return float(super().tick(*args, **kwargs))

    def close(self) -> None:
        if self.leading:
            self.leader.release()
            self.leading = False
        super().close()
