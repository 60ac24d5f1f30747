"""Which queue each task goes to, and the order the worker takes them in (no broker needed)."""

from __future__ import annotations

import re
from pathlib import Path

from app.adapters import queue

ROOT = Path(__file__).resolve().parents[2]
CONFIG = {
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "OUTBOX_INTERVAL_SECONDS": 5,
    "NOTIFY_RETRY_INTERVAL_SECONDS": 60,
    "RECONCILE_INTERVAL_SECONDS": 300,
    "PAYMENT_SWEEP_SECONDS": 120,
}


def test_deliveries_have_their_own_queue_and_everything_else_the_default():
    config = queue.celery_config(CONFIG)
    assert config["task_default_queue"] == queue.DEFAULT_QUEUE
    assert config["task_routes"] == {
        queue.DELIVER_NOTIFICATION: {"queue": queue.NOTIFICATIONS_QUEUE},
        queue.DELIVER_WEBHOOK: {"queue": queue.WEBHOOKS_QUEUE},
    }


def test_the_worker_takes_the_default_queue_before_the_notifications():
    # kombu's "sorted" strategy puts the queues in one BRPOP in sorted order, and BRPOP pops from
    # the first non-empty list: charges and event dispatches never wait behind e-mail.
    config = queue.celery_config(CONFIG)
    assert config["broker_transport_options"]["queue_order_strategy"] == "sorted"
    consumed = queue.WORKER_QUEUES.split(",")
    assert sorted(consumed)[0] == queue.DEFAULT_QUEUE
    assert set(consumed) == {queue.DEFAULT_QUEUE, queue.NOTIFICATIONS_QUEUE}


def test_the_procfile_worker_consumes_both_queues():
    for name in ("Procfile", "Procfile.dev"):
        worker = next(line for line in (ROOT / name).read_text().splitlines() if line.startswith("worker:"))
        assert re.search(rf"--queues {re.escape(queue.WORKER_QUEUES)}(\s|$)", worker), (name, worker)


def test_the_worker_runs_as_many_processes_as_worker_concurrency_says():
    # The Procfile's worker line gives no --concurrency: Celery takes worker_concurrency, which
    # comes from the WORKER_CONCURRENCY setting (app/config.py, its one home).
    assert queue.celery_config({**CONFIG, "WORKER_CONCURRENCY": 5})["worker_concurrency"] == 5
    procfile = (ROOT / "Procfile").read_text()
    assert "--concurrency" not in procfile


def test_webhook_deliveries_have_a_queue_and_a_process_of_their_own():
    config = queue.celery_config(CONFIG)
    assert config["task_routes"][queue.DELIVER_WEBHOOK] == {"queue": queue.WEBHOOKS_QUEUE}
    assert queue.WEBHOOKS_QUEUE not in queue.WORKER_QUEUES.split(",")
    for name in ("Procfile", "Procfile.dev"):
        line = next(line for line in (ROOT / name).read_text().splitlines() if line.startswith("webhooks:"))
        assert re.search(rf"--queues {re.escape(queue.WEBHOOKS_QUEUE)}(\s|$)", line), (name, line)
