"""The Procfile's web, worker and beat run together under honcho and serve the API."""

import json
from typing import Any

import psycopg
import requests

from tests.e2e.conftest import Stack, wait_for
from tests.e2e.harness import ShopClient


def test_procfile_processes_start_and_serve(stack: Stack):
    stack.start_honcho(("web", "worker", "beat"))
    stack.wait_web()
    stack.wait_worker(log_name="honcho")

    ready = requests.get(stack.url("/readyz"), headers={"X-Request-ID": "e2e-ready-1"}, timeout=5)
    assert ready.status_code == 200
    assert ready.headers["X-Request-ID"] == "e2e-ready-1"
    assert ready.json()["redis"]["status"] == "ok"
    assert requests.get(stack.url("/docs"), timeout=5).status_code == 200
    assert "/readyz" in requests.get(stack.url("/openapi.json"), timeout=5).json()["paths"]

    # Every line the processes print is a JSON object; request lines carry the request id.
    lines = [line.split("|", 1)[-1].strip() for line in stack.log("honcho").splitlines()]
    web_lines = [json.loads(line) for line in lines if line.startswith("{")]
    assert any(entry.get("request_id") == "e2e-ready-1" for entry in web_lines)


def test_a_request_queues_a_task_through_the_outbox_and_the_worker_completes_it(stack: Stack):
    """POST /orders commits an OrderPlaced outbox event; the worker charges the payment."""
    stack.start_sandbox()
    stack.start_honcho(("web", "worker", "beat"))
    stack.wait_web()
    stack.wait_worker(log_name="honcho")
    shop = ShopClient(stack)
    _, admin = shop.sign_up("admin")
    product = shop.create_product(admin, stock=5)
    user_id, token = shop.sign_up()
    cart_id = shop.fill_cart(user_id, token, product, quantity=2)

    placed = shop.request(
        "POST",
        "/orders",
        token,
        json={"userId": user_id, "cartId": cart_id},
        headers={"X-Request-ID": "e2e-checkout-1"},
    )
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["orderId"]
    wait_for(
        lambda: shop.payment_status(order_id, token) == "COMPLETED", timeout=60, what="payment COMPLETED"
    )

    def outbox_rows() -> list[tuple[Any, ...]]:
        with psycopg.connect(stack.database_url, autocommit=True) as conn:
            # The sign-up's own EmailVerificationRequested carries the sign-up's request id.
            return conn.execute(
                "SELECT published_at, processed_at, request_id FROM outbox"
                " WHERE event_type <> 'EmailVerificationRequested'"
            ).fetchall()

    # Every event (OrderPlaced, then PaymentCompleted recorded by the worker) is relayed and handled.
    wait_for(lambda: all(r[0] and r[1] for r in outbox_rows()), timeout=60, what="outbox drained")
    rows = outbox_rows()
    assert len(rows) >= 2
    assert {r[2] for r in rows} == {"e2e-checkout-1"}
    # The worker's log lines for the tasks this request queued carry its request id.
    worker_lines = [
        json.loads(line.split("|", 1)[1])
        for line in stack.log("honcho").splitlines()
        if line.split("|", 1)[0].strip().split(" ")[-1].startswith("worker")
        and "|" in line
        and line.split("|", 1)[1].strip().startswith("{")
    ]
    # The charge runs in the OrderPlaced dispatch (no task of its own on the normal path).
    assert any(
        entry.get("request_id") == "e2e-checkout-1"
        and entry.get("task") == "oms.dispatch_event"
        and entry.get("event") == "payment_completed"
        for entry in worker_lines
    )
