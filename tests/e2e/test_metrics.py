"""Prometheus, the ecosystem's way: /metrics sums every gunicorn worker (multiprocess mode), the
worker exposes Celery task metrics, and queue, breaker and status gauges come from Redis."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from app.task_metrics import BREAKER_STATE_KEYS, BREAKER_STATES
from tests.e2e.conftest import PrivateRedis, Stack, free_port, wait_for
from tests.e2e.harness import ShopClient


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def total(found: dict, name: str, predicate: Callable[[dict[str, str]], bool] = lambda _: True) -> float:
    return sum(v for (n, labels), v in found.items() if n == name and predicate(dict(labels)))


def test_two_scrapes_under_load_never_go_backwards_and_count_every_worker(stack: Stack):
    assert stack.env["WEB_CONCURRENCY"] == "2"
    stack.start("web")
    stack.wait_web()
    requests_per_client, clients = 150, 4

    def load() -> None:
        with requests.Session() as http:  # a new connection per request: both workers take some
            for _ in range(requests_per_client):
                assert http.get(stack.url("/healthz"), headers={"Connection": "close"}, timeout=10).ok

    threads = [threading.Thread(target=load) for _ in range(clients)]
    for thread in threads:
        thread.start()
    seen: list[float] = []
    try:
        for _ in range(400):  # bounded; stops when the load is over
            scrape = requests.get(stack.url("/metrics"), headers={"Connection": "close"}, timeout=10)
            assert scrape.status_code == 200
            seen.append(
                value(
                    samples(scrape.text),
                    "oms_http_requests_total",
                    route="/healthz",
                    method="GET",
                    status="200",
                )
            )
            if not any(t.is_alive() for t in threads):
                break
    finally:
        for thread in threads:
            thread.join(timeout=60)
    assert len(seen) >= 2
    assert all(later >= earlier for earlier, later in itertools.pairwise(seen)), seen
    # After the load, any worker's answer counts every request both workers served.
    for _ in range(4):
        final = samples(requests.get(stack.url("/metrics"), headers={"Connection": "close"}, timeout=10).text)
        assert value(final, "oms_http_requests_total", route="/healthz", method="GET", status="200") >= (
            requests_per_client * clients
        )


def test_task_metrics_queue_and_breaker_gauges_appear_after_a_payment(
    tmp_path, e2e_database_url: str, private_redis: PrivateRedis
):
    worker_port = free_port()
    stack = Stack(
        tmp_path,
        e2e_database_url,
        private_redis,
        WORKER_METRICS_PORT=str(worker_port),
        STATUS_COUNTS_REFRESH_SECONDS="1",
    )
    stack.release()
    try:
        stack.start_stack()
        shop = ShopClient(stack)
        _, admin = shop.sign_up("admin")
        product = shop.create_product(admin, stock=5)
        user_id, token = shop.sign_up()
        cart_id = shop.fill_cart(user_id, token, product)
        placed = shop.checkout(user_id, token, cart_id)
        assert placed.status_code == 201, placed.text
        order_id = placed.json()["orderId"]
        wait_for(lambda: shop.payment_status(order_id, token) == "COMPLETED", 90, 0.5, "payment COMPLETED")

        def worker_metrics() -> dict:
            return samples(requests.get(f"http://127.0.0.1:{worker_port}/metrics", timeout=5).text)

        found = wait_for(
            lambda: (
                (m := worker_metrics())
                and value(m, "oms_celery_tasks_total", task="oms.dispatch_event", state="SUCCESS") >= 1
                and m
            ),
            30,
            what="the dispatch (which charges a new order) counted by the worker",
        )
        assert value(found, "oms_celery_task_duration_seconds_count", task="oms.dispatch_event") >= 1
        assert value(found, "oms_celery_task_duration_seconds_sum", task="oms.dispatch_event") > 0
        assert value(found, "oms_celery_queue_length", queue="oms") >= 0
        assert ("oms_celery_queue_length", (("queue", "oms.notifications"),)) in found
        # The gateway answered: its breaker is closed. This stack has no SMTP server, so the SMTP
        # breaker may have opened meanwhile: each breaker is in exactly one state, the one Redis holds.
        assert value(found, "oms_circuit_breaker_state", breaker="gateway", state="closed") == 1
        for breaker, key in BREAKER_STATE_KEYS.items():
            raw = redis.Redis.from_url(private_redis.url).get(key)
            stored = raw.decode() if raw else "closed"
            states = {
                s: value(found, "oms_circuit_breaker_state", breaker=breaker, state=s) for s in BREAKER_STATES
            }
            assert states == {s: float(s == stored) for s in BREAKER_STATES}, (breaker, stored, states)

        # The web's /metrics: breaker and queue gauges, and the payment counted by beat's refresh.
        web = wait_for(
            lambda: (
                (m := samples(requests.get(stack.url("/metrics"), timeout=5).text))
                and value(m, "oms_payments", status="COMPLETED") == 1
                and m
            ),
            30,
            what="oms_payments refreshed by beat",
        )
        assert value(web, "oms_circuit_breaker_state", breaker="gateway", state="closed") == 1
        assert ("oms_celery_queue_length", (("queue", "oms"),)) in web
        assert value(web, "oms_status_counts_age_seconds") < 30
        assert total(web, "oms_orders_placed_total") == 1
    finally:
        stack.stop_all()
