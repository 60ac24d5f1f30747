"""Bare Celery: a no-op task on the same broker, with the worker settings the application uses.

    celery --app bench.noop_tasks worker --concurrency 2 --queues bench-noop --without-gossip --without-mingle

It is the floor for "payments drained per second": what one worker drains when a task does nothing.
The delivery settings that cost per task (late acknowledgement, prefetch of one, JSON) are those of
``app.adapters.queue.celery_config`` so that the comparison isolates what our tasks do.
"""

from __future__ import annotations

import os

from celery import Celery

QUEUE = "bench-noop"
NOOP = "bench.noop"

app = Celery("bench-noop", broker=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_backend=None,
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_default_queue=QUEUE,
    worker_hijack_root_logger=False,
    worker_send_task_events=False,
    broker_connection_retry_on_startup=True,
    broker_transport_options={"visibility_timeout": 7200},
)


@app.task(name=NOOP)
def noop(n: int) -> None:
    """Nothing: the cost measured is Celery's own (fetch, decode, run, acknowledge)."""
    return None
