"""kombu's Redis transport with one guard, so a worker outlives a Redis outage.

When the broker connection drops while the worker holds unacknowledged messages (a task waiting
for its retry countdown, for instance), Celery closes the connection and kombu restores those
messages on the way out. By then the transport has let go of its connection details and kombu
reads ``None.hostname``: an ``AttributeError``, which Celery treats as unrecoverable, and the
worker process exits instead of reconnecting (kombu 5.7). Reported as a connection error instead,
it is ignored like every other error of a dead connection; the messages stay in Redis's unacked
set and come back after the visibility timeout, and the beat job re-queues notifications whose
delivery was lost. Configured by ``broker_transport`` in ``app/adapters/queue.py``.

And one economy: kombu builds a new ``redis.Redis`` client (over the channel's connection pool)
for every message it publishes; that construction was a sixth of a checkout's publish (docs/bench).
The channel keeps one per pool instead (a client is only a handle on the pool: thread-safe).
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    _sync_client: tuple[Any, Any] | None = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[misc]
        pool = self.pool
        cached = self._sync_client
        if cached is None or cached[0] is not pool:  # a new pool after a reconnection: a new client
            cached = self._sync_client = (pool, super()._create_client())  # type: ignore[misc]
        return cached[1]

    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection.client is None:
            raise redis.exceptions.ConnectionError("the broker connection is already closed")
        return super()._connparams(asynchronous=asynchronous)  # type: ignore[misc]


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = Channel
