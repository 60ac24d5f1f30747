"""Celery, the Flask way: ``celery_init_app`` binds a Celery app whose tasks run in the app context.

Tasks are addressed by name (``send_task``) so that the web process never imports the worker.
Publishing is bounded: when Redis is unreachable a publish fails within about a second, and a
process-local breaker then skips publishing for a few seconds (the outbox relay catches up).
"""

from __future__ import annotations

import signal
from datetime import timedelta
from typing import Any

import pybreaker
from celery import Celery, Task
from celery.signals import before_task_publish, task_postrun, task_prerun, worker_process_init
from flask import Flask, current_app, has_app_context

from app.adapters import redis_budget
from app.log import bind_request_id, current_request_id, get_logger

log = get_logger(__name__)

# Task names: the contract between the web process and the worker.
DISPATCH_EVENT = "oms.dispatch_event"
RELAY_OUTBOX = "oms.relay_outbox"
CHARGE_PAYMENT = "oms.charge_payment"
REFUND_PAYMENT = "oms.refund_payment"
SWEEP_PENDING_PAYMENTS = "oms.sweep_pending_payments"
DELIVER_NOTIFICATION = "oms.deliver_notification"
RETRY_FAILED_NOTIFICATIONS = "oms.retry_failed_notifications"
RECONCILE_STOCK = "oms.reconcile_stock"
PURGE_EXPIRED = "oms.purge_expired"
REFRESH_STATUS_COUNTS = "oms.refresh_status_counts"

# Queues. The worker consumes both, always ``oms`` first (``sorted`` order: BRPOP takes from the
# first non-empty list): e-mail waits behind the money and the events that lead to it, so a burst
# of orders is charged before its e-mails go out, and an SMTP retry storm never delays a charge.
DEFAULT_QUEUE = "oms"
NOTIFICATIONS_QUEUE = "oms.notifications"
WORKER_QUEUES = f"{DEFAULT_QUEUE},{NOTIFICATIONS_QUEUE}"  # the Procfile's --queues

# Longer than any countdown a task may schedule: Redis redelivers unacked messages after this.
VISIBILITY_TIMEOUT_SECONDS = 2 * 3600
MAX_COUNTDOWN_SECONDS = 3600

publish_breaker = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=5, name="broker-publish")


class BrokerUnavailable(RuntimeError):
    """The message could not be handed to the broker now; the outbox relay will retry."""


def beat_schedule(config: dict[str, Any]) -> dict[str, Any]:
    """The one place where periodic jobs and their periods are declared."""
    refresh = float(config.get("STATUS_COUNTS_REFRESH_SECONDS", 30))
    return {
        "relay-outbox": {
            "task": RELAY_OUTBOX,
            "schedule": timedelta(seconds=float(config["OUTBOX_INTERVAL_SECONDS"])),
            "options": {"expires": float(config["OUTBOX_INTERVAL_SECONDS"]) * 4},
        },
        "retry-failed-notifications": {
            "task": RETRY_FAILED_NOTIFICATIONS,
            "schedule": timedelta(seconds=int(config["NOTIFY_RETRY_INTERVAL_SECONDS"])),
        },
        "reconcile-stock": {
            "task": RECONCILE_STOCK,
            "schedule": timedelta(seconds=int(config["RECONCILE_INTERVAL_SECONDS"])),
        },
        "sweep-pending-payments": {
            "task": SWEEP_PENDING_PAYMENTS,
            # Twice per idle threshold: a lost charge is found within 1.5 × PAYMENT_SWEEP_SECONDS.
            "schedule": timedelta(seconds=max(5.0, float(config["PAYMENT_SWEEP_SECONDS"]) / 2)),
        },
        "purge-expired": {"task": PURGE_EXPIRED, "schedule": timedelta(hours=1)},
        # Payments/notifications by status for /metrics (app/task_metrics.py): counted here, not per scrape.
        "refresh-status-counts": {
            "task": REFRESH_STATUS_COUNTS,
            "schedule": timedelta(seconds=refresh),
            "options": {"expires": refresh},
        },
    }


def celery_config(config: dict[str, Any]) -> dict[str, Any]:
    redis_url = config["REDIS_URL"]
    return {
        "broker_url": redis_url,
        # kombu's Redis transport, guarded so a worker survives Redis going away (see the module).
        "broker_transport": "app.adapters.redis_broker:Transport",
        "result_backend": None,
        "task_ignore_result": True,
        "include": ["worker.tasks"],
        "task_serializer": "json",
        "accept_content": ["json"],
        "timezone": "UTC",
        "enable_utc": True,
        # Reliability: a task is acknowledged only after it ran; a worker lost mid-task means
        # the message is redelivered (our tasks are idempotent).
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": 120,
        "task_soft_time_limit": 90,
        "worker_max_tasks_per_child": 1000,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "broker_heartbeat": 0,
        "broker_transport_options": {
            "visibility_timeout": VISIBILITY_TIMEOUT_SECONDS,
            "socket_connect_timeout": 1,
            "socket_timeout": 1,
            "socket_keepalive": True,
            "health_check_interval": 10,
            "max_retries": 0,
            "queue_order_strategy": "sorted",  # DEFAULT_QUEUE before NOTIFICATIONS_QUEUE
        },
        "broker_pool_limit": 10,
        "broker_connection_timeout": 1,
        # Publishing from a web request must not block: no retries; the outbox relay retries.
        "task_publish_retry": False,
        "task_default_queue": DEFAULT_QUEUE,
        "task_routes": {DELIVER_NOTIFICATION: {"queue": NOTIFICATIONS_QUEUE}},
        "task_create_missing_queues": True,
        "worker_hijack_root_logger": False,
        # Processes per worker (``celery worker`` reads it when no ``--concurrency`` is given).
        "worker_concurrency": int(config.get("WORKER_CONCURRENCY") or 2),
        "worker_send_task_events": False,
        "beat_schedule": beat_schedule(config),
        "beat_max_loop_interval": 5,
        # A second beat stands by instead of scheduling everything twice (app/adapters/beat.py).
        "beat_scheduler": "app.adapters.beat:SingleBeatScheduler",
    }


def celery_init_app(app: Flask) -> Celery:
    class FlaskTask(Task):  # type: ignore[misc]
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app: Celery = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(celery_config(app.config))
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


def send_task(
    name: str,
    args: list[Any] | None = None,
    *,
    countdown: float | None = None,
    request_id: str | None = None,
    **options: Any,
) -> None:
    """Publish a task by name, bounded in time; raises BrokerUnavailable when it cannot."""
    celery_app: Celery = current_app.extensions["celery"]
    headers = {"request_id": request_id or current_request_id()}
    if countdown is not None:
        options["countdown"] = max(0.0, min(float(countdown), MAX_COUNTDOWN_SECONDS))
    skip = redis_budget.skip_reason()  # on a request path: Redis just seen hung, or the budget spent
    if skip:
        raise BrokerUnavailable(f"publishing skipped: {skip}")
    try:
        publish_breaker.call(
            celery_app.send_task, name, args=args or [], headers=headers, retry=False, **options
        )
    except pybreaker.CircuitBreakerError as exc:
        raise BrokerUnavailable("broker recently unreachable; publishing skipped") from exc
    except Exception as exc:  # kombu/redis raise many types; all mean "not published"
        log.warning("publish_failed", task=name, error=f"{type(exc).__name__}: {exc}")
        if redis_budget.on_request_path():
            redis_budget.mark_unavailable()
        raise BrokerUnavailable(str(exc)) from exc


@before_task_publish.connect
def _propagate_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is not None and not headers.get("request_id") and has_app_context():
        rid = current_request_id()
        if rid:
            headers["request_id"] = rid


@task_prerun.connect
def _bind_task_context(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    request_id = getattr(task.request, "request_id", None) if task is not None else None
    bind_request_id(request_id or None)
    from structlog.contextvars import bind_contextvars

    bind_contextvars(task=getattr(task, "name", None), task_id=task_id)
    log.info("task_started")


@task_postrun.connect
def _log_task_done(task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any) -> None:
    log.info("task_finished", state=state)


@worker_process_init.connect
def _pool_children_leave_sigterm_to_the_main_process(**_: Any) -> None:
    """Heroku (and ``kill`` of a process group) sends SIGTERM to every process of the worker.

    The main process answers it with a warm shutdown: it stops consuming and waits for the running
    tasks. A pool child would die of it by default, losing the task mid-way (redelivered later
    thanks to acks_late, but run twice in part). So children ignore SIGTERM; they exit when the
    main process closes the pool, and billiard kills them with SIGKILL past the hard time limit or
    when the main process dies (pdeathsig). Revoke with ``signal="SIGKILL"`` to stop one task.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
