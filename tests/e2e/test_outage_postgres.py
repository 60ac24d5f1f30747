"""Postgres down: the API answers 503 quickly, and the same processes recover by themselves.

The stack runs on a Postgres of the test's own, stopped the way a crash stops it (immediate
shutdown, every connection cut). While it is down, ``/readyz`` and every request that needs the
database answer a problem+json 503 with ``Retry-After`` within seconds (no hanging request), and
``/healthz`` stays 200. No process dies or crash-loops. When Postgres is back, the very same web,
worker and beat processes (same pids, no restart) serve again: readiness turns green, a new order
is placed and charged.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import PrivateRedis, Stack, wait_for
from tests.e2e.harness import PrivatePostgres, ShopClient, timed

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore:XDG_RUNTIME_DIR is not set")]


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    server.start()
    server.create_database()
    yield server
    server.destroy()


@pytest.fixture
def stack_on_private_postgres(
    tmp_path: Path, private_postgres: PrivatePostgres, private_redis: PrivateRedis
) -> Iterator[Stack]:
    """The Procfile's processes on a Postgres and a Redis that the test may both stop."""
    s = Stack(tmp_path, private_postgres.url, private_redis)
    s.release()
    yield s
    s.stop_all()
    if os.environ.get("E2E_SHOW_LOGS"):
        for log in sorted(tmp_path.glob("*.log")):
            print(f"===== {log.name}\n{log.read_text(errors='replace')[-4000:]}")


# The database connect timeout is 3 s; a request may pay it once, plus the pool's checkout.
MAX_SECONDS_WHILE_DOWN = 8.0
OUTAGE_SECONDS = 10


def assert_503_problem(response: requests.Response) -> None:
    assert response.status_code == 503, (response.request.method, response.url, response.text)
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert int(response.headers["Retry-After"]) > 0
    body = response.json()
    assert body["status"] == 503
    assert {"type", "title", "detail"} <= set(body)


def test_postgres_outage_answers_503_fast_and_the_same_processes_recover(
    stack_on_private_postgres: Stack, private_postgres: PrivatePostgres
):
    stack = stack_on_private_postgres
    stack.start_stack()
    pids = {name: stack.processes[name].pid for name in ("web", "worker", "beat")}
    shop = ShopClient(stack)
    _, admin = shop.sign_up("admin")
    product = shop.create_product(admin, stock=50)
    user_id, token = shop.sign_up()
    cart_id = shop.fill_cart(user_id, token, product)
    first = shop.checkout(user_id, token, cart_id)
    assert first.status_code == 201
    shop.wait_payments({first.json()["orderId"]: token})
    shop.fill_cart(user_id, token, product)

    private_postgres.stop()
    outage_started = time.monotonic()
    while time.monotonic() - outage_started < OUTAGE_SECONDS:
        for method, path, kwargs in (
            ("GET", "/readyz", {}),
            ("POST", "/orders", {"json": {"userId": user_id, "cartId": cart_id}}),
            ("GET", f"/products/{product}", {}),
            ("GET", f"/cart/{user_id}", {}),
        ):
            response, seconds = timed(lambda m=method, p=path, k=kwargs: shop.request(m, p, token, **k))
            assert seconds < MAX_SECONDS_WHILE_DOWN, f"{method} {path} took {seconds:.1f}s with Postgres down"
            assert_503_problem(response)
        health = shop.request("GET", "/healthz")
        assert health.status_code == 200
        time.sleep(0.5)
    # Nothing crashed or restarted while the database was away.
    for name, pid in pids.items():
        assert stack.processes[name].poll() is None, f"{name} exited during the outage"
        assert stack.processes[name].pid == pid

    private_postgres.start()
    wait_for(lambda: shop.request("GET", "/readyz").status_code == 200, 60, interval=0.5, what="ready again")
    second = shop.checkout(user_id, token, cart_id)
    assert second.status_code == 201, second.text
    shop.wait_payments({second.json()["orderId"]: token}, timeout=120)
    assert shop.request("GET", f"/products/{product}").json()["stock"] == 48
    for name, pid in pids.items():
        assert stack.processes[name].poll() is None, f"{name} exited after the outage"
        assert stack.processes[name].pid == pid
    # The web process served the outage without a worker being killed for hanging.
    assert "WORKER TIMEOUT" not in stack.log("web")
