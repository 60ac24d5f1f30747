"""Prometheus metrics of the Celery side: task counts, durations, retries and failures (Celery
signals), queue lengths and circuit-breaker states (read from Redis at scrape time), and the
payment/notification counts by status that beat refreshes into Redis (so no scrape scans a table).

The worker runs a prefork pool: its children record task metrics into files under
``PROMETHEUS_MULTIPROC_DIR`` (set by the Procfile's worker line before Python starts), and the
worker's main process serves their sum on ``WORKER_METRICS_PORT`` (0: not served; the web's
``/metrics`` includes them too when both share the directory, as under ``make run``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import redis
from celery import Celery
from celery.signals import task_failure, task_postrun, task_prerun, task_retry, worker_ready
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client import multiprocess as prom_multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app.adapters.breakers import state_key
from app.adapters.gateway import GATEWAY_BREAKER
from app.adapters.mailer import SMTP_BREAKER
from app.log import get_logger

log = get_logger(__name__)

TASKS = Counter("oms_celery_tasks_total", "Celery tasks finished, by task and final state", ["task", "state"])
TASK_DURATION = Histogram(
    "oms_celery_task_duration_seconds",
    "Celery task run time by task",
    ["task"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
)
TASK_RETRIES = Counter("oms_celery_task_retries_total", "Celery task retries by task", ["task"])
TASK_FAILURES = Counter("oms_celery_task_failures_total", "Celery tasks that raised, by task", ["task"])

# Where the two circuit breakers keep their state (pybreaker's CircuitRedisStorage, under the
# namespace each adapter gives it), by the name the metric shows.
BREAKER_STATE_KEYS = {"gateway": state_key(GATEWAY_BREAKER), "smtp": state_key(SMTP_BREAKER)}
BREAKER_STATES = ("closed", "half-open", "open")
STATUS_COUNTS_KEY = "oms:metrics:status-counts"
REDIS_SCRAPE_TIMEOUT_SECONDS = 0.25

_started: dict[str, float] = {}


def _task_name(task: Any, sender: Any = None) -> str:
    return str(getattr(task, "name", None) or getattr(sender, "name", None) or "unknown")


@task_prerun.connect
def _task_started(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task_id:
        _started[task_id] = time.perf_counter()


@task_postrun.connect
def _task_finished(task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any) -> None:
    name = _task_name(task)
    started = _started.pop(task_id or "", None)
    if started is not None:
        TASK_DURATION.labels(name).observe(time.perf_counter() - started)
    TASKS.labels(name, state or "UNKNOWN").inc()


@task_retry.connect
def _task_retried(sender: Any = None, **_: Any) -> None:
    TASK_RETRIES.labels(_task_name(sender)).inc()


@task_failure.connect
def _task_failed(sender: Any = None, **_: Any) -> None:
    TASK_FAILURES.labels(_task_name(sender)).inc()


class RedisStateCollector(Collector):
    """Queue lengths, breaker states and the beat-refreshed status counts: a few Redis reads."""

    def __init__(self, redis_url: str, queues: tuple[str, ...]) -> None:
        self.redis_url = redis_url
        self.queues = queues
        self._client: redis.Redis | None = None

    def _redis(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis.from_url(
                self.redis_url,
                socket_connect_timeout=REDIS_SCRAPE_TIMEOUT_SECONDS,
                socket_timeout=REDIS_SCRAPE_TIMEOUT_SECONDS,
            )
        return self._client

    def collect(self) -> Iterator[Metric]:
        try:
            pipe = self._redis().pipeline(transaction=False)
            for queue in self.queues:
                pipe.llen(queue)
            for key in BREAKER_STATE_KEYS.values():
                pipe.get(key)
            pipe.get(STATUS_COUNTS_KEY)
            values = pipe.execute()
        except redis.RedisError:  # Redis is down: the rest of /metrics still answers
            return
        lengths = GaugeMetricFamily(
            "oms_celery_queue_length", "Messages waiting in a queue", labels=["queue"]
        )
        for queue, length in zip(self.queues, values, strict=False):
            lengths.add_metric([queue], float(length or 0))
        yield lengths
        states = GaugeMetricFamily(
            "oms_circuit_breaker_state",
            "1 for the state each circuit breaker is in (closed, half-open, open)",
            labels=["breaker", "state"],
        )
        raw_states = values[len(self.queues) : len(self.queues) + len(BREAKER_STATE_KEYS)]
        for breaker, raw in zip(BREAKER_STATE_KEYS, raw_states, strict=True):
            current = raw.decode() if raw else "closed"  # no key yet: never tripped
            for state in BREAKER_STATES:
                states.add_metric([breaker, state], 1.0 if state == current else 0.0)
        yield states
        yield from status_count_metrics(values[-1])


def status_count_metrics(raw: bytes | None) -> Iterator[Metric]:
    if not raw:
        return
    snapshot = json.loads(raw)
    payments = GaugeMetricFamily(
        "oms_payments",
        "Payments by status (refreshed by beat, see oms_status_counts_age_seconds)",
        labels=["status"],
    )
    for status, count in sorted(snapshot["payments"].items()):
        payments.add_metric([status], float(count))
    yield payments
    notes = GaugeMetricFamily(
        "oms_notifications", "Notifications by status (refreshed by beat)", labels=["status"]
    )
    for status, count in sorted(snapshot["notifications"].items()):
        notes.add_metric([status], float(count))
    yield notes
    yield GaugeMetricFamily(
        "oms_status_counts_age_seconds",
        "Seconds since beat last refreshed oms_payments and oms_notifications",
        value=max(0.0, time.time() - float(snapshot["at"])),
    )


def store_status_counts(redis_url: str, payments: dict[str, int], notifications: dict[str, int]) -> None:
    """Beat's refresh: one SET, read by every scrape."""
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=1, socket_timeout=1)
    body = {"payments": payments, "notifications": notifications, "at": time.time()}
    client.set(STATUS_COUNTS_KEY, json.dumps(body), ex=3600)


def worker_registry(redis_url: str, queues: tuple[str, ...]) -> CollectorRegistry:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        prom_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        for metric in (TASKS, TASK_DURATION, TASK_RETRIES, TASK_FAILURES):
            registry.register(metric)
    registry.register(RedisStateCollector(redis_url, queues))
    return registry


def serve_worker_metrics(celery: Celery, config: dict[str, Any], queues: tuple[str, ...]) -> None:
    """On ``worker_ready`` (the main process), serve the worker's metrics on WORKER_METRICS_PORT."""
    port = int(config.get("WORKER_METRICS_PORT") or 0)
    if not port:
        return

    @worker_ready.connect(weak=False)
    def _serve(**_: Any) -> None:
        start_http_server(port, addr="0.0.0.0", registry=worker_registry(str(config["REDIS_URL"]), queues))
        log.info("worker_metrics_listening", port=port)
