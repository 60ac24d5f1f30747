"""Request ids, access logs and Prometheus metrics for every request."""

from __future__ import annotations

import time
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prom_multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from app.adapters.redis_budget import end_request_budget, start_request_budget
from app.log import bind_request_id, clean_request_id, get_logger

log = get_logger("oms.access")

REQUESTS = Counter(
    "oms_http_requests_total", "HTTP requests by route, method and status", ["route", "method", "status"]
)
LATENCY = Histogram(
    "oms_http_request_duration_seconds",
    "HTTP request latency by route and method",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
ORDERS_PLACED = Counter("oms_orders_placed_total", "Orders placed")
DRAINING = Gauge("oms_web_draining", "1 while this web process is shutting down", multiprocess_mode="max")


class DatabaseStatsCollector(Collector):
    """The outbox backlog, read from Postgres at scrape time (a partial index bounds it by the backlog).

    Payments and notifications by status are not counted here: beat refreshes those counts into
    Redis (``oms.refresh_status_counts``) and ``RedisStateCollector`` reads them, so no scrape scans
    a table.
    """

    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self) -> Any:
        from app.services.ops import outbox_stats

        try:
            with self.app.app_context():
                stats = outbox_stats()
        except Exception:  # the database is down: /metrics still answers
            return
        yield GaugeMetricFamily(
            "oms_outbox_pending", "Outbox messages not processed yet", value=stats["outbox_pending"]
        )
        yield GaugeMetricFamily(
            "oms_outbox_lag_seconds",
            "Age of the oldest unprocessed outbox message",
            value=stats["outbox_lag_seconds"],
        )


def metrics_response(app: Flask) -> Response:
    registry: CollectorRegistry = REGISTRY
    if app.config.get("PROMETHEUS_MULTIPROC_DIR"):
        # gunicorn workers write their samples to files; any one of them serves the sum.
        registry = CollectorRegistry()
        prom_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    body = generate_latest(registry)
    db_body = generate_latest(_db_registry(app))
    return Response(body + db_body, content_type=CONTENT_TYPE_LATEST)


def _db_registry(app: Flask) -> CollectorRegistry:
    registry = app.extensions.get("oms_db_registry")
    if registry is None:
        from app.adapters.queue import DEFAULT_QUEUE, NOTIFICATIONS_QUEUE
        from app.task_metrics import RedisStateCollector

        registry = CollectorRegistry(auto_describe=False)
        registry.register(DatabaseStatsCollector(app))
        registry.register(
            RedisStateCollector(str(app.config["REDIS_URL"]), (DEFAULT_QUEUE, NOTIFICATIONS_QUEUE))
        )
        app.extensions["oms_db_registry"] = registry
    return registry  # type: ignore[no-any-return]


def drop_retry_after_unless_refused(response: Response) -> Response:
    """Flask-Limiter adds Retry-After to every limited response; it means "retry" only on 429/503."""
    if response.status_code not in (429, 503) and "Retry-After" in response.headers:
        del response.headers["Retry-After"]
    return response


SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
)
NOT_LOGGED = frozenset({"/metrics", "/healthz"})


class _RequestMetrics:
    """The per-route counter and histogram children, looked up once per process: ``labels()``
    validates and locks on every call, half of what counting a request cost."""

    def __init__(self) -> None:
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, route: str, method: str, status: int, elapsed: float) -> None:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = (REQUESTS.labels(route, method, str(status)), LATENCY.labels(route, method))
            self._children[key] = children
        children[0].inc()
        children[1].observe(elapsed)


def init_observability(app: Flask) -> None:
    metrics = _RequestMetrics()

    @app.before_request
    def _start() -> None:
        g.request_id = clean_request_id(request.headers.get("X-Request-ID"))
        g.started = time.perf_counter()
        bind_request_id(g.request_id)
        start_request_budget()  # about a second for all of this request's Redis work

    @app.teardown_request
    def _end_budget(_: BaseException | None = None) -> None:
        end_request_budget()

    @app.after_request
    def _finish(response: Response) -> Response:
        request_id = g.get("request_id") or clean_request_id(None)
        headers = response.headers
        headers["X-Request-ID"] = request_id
        for name, value in SECURITY_HEADERS:
            headers.setdefault(name, value)
        rule = request.url_rule
        route = rule.rule if rule is not None else "<unmatched>"
        started = g.get("started")
        elapsed = time.perf_counter() - started if started is not None else 0.0
        method, status = request.method, response.status_code
        metrics.observe(route, method, status, elapsed)
        if route not in NOT_LOGGED:
            log.info(
                "request",
                method=method,
                path=request.path,
                route=route,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
            )
        return response
