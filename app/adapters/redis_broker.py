"""kombu's Redis transport with one guard, so a worker outlives a Redis outage.

When the broker connection drops while the worker holds unacknowledged messages (a task waiting
for its retry countdown, for instance), Celery closes the connection and kombu restores those
messages on the way out. By then the transport has let go of its connection details and kombu
reads ``None.hostname``: an ``AttributeError``, which Celery treats as unrecoverable, and the
worker process exits instead of reconnecting (kombu 5.7). Reported as a connection error instead,
it is ignored like every other error of a dead connection; the messages stay in Redis's unacked
set and come back after the visibility timeout, and the beat job re-queues notifications whose
delivery was lost. Configured by ``broker_transport`` in ``app/adapters/queue.py``.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection.client is None:
            raise redis.exceptions.ConnectionError("the broker connection is already closed")
        return super()._connparams(asynchronous=asynchronous)  # type: ignore[misc]


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = Channel
