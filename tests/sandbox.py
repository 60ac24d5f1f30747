"""Test helpers for the payment sandbox: a fixture that serves it in-process on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from app.payments_sandbox import SandboxServer

API_KEY = "sk_test_oms"


class Sandbox:
    """A running sandbox plus the calls tests make to its test-support endpoints."""

    def __init__(self, server: SandboxServer) -> None:
        self.server = server
        self.url = server.url

    def faults(self, **body: int) -> None:
        requests.post(f"{self.url}/_sandbox/faults", json=body, timeout=5).raise_for_status()

    def clear_faults(self) -> None:
        requests.delete(f"{self.url}/_sandbox/faults", timeout=5).raise_for_status()

    def stats(self, payment_id: Any = None) -> dict[str, Any]:
        params = {"paymentId": str(payment_id)} if payment_id is not None else {}
        response = requests.get(f"{self.url}/_sandbox/stats", params=params, timeout=5)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {API_KEY}", **kwargs.pop("headers", {})}
        return requests.request(method, f"{self.url}{path}", headers=headers, timeout=10, **kwargs)


@pytest.fixture(name="sandbox")
def sandbox_fixture() -> Iterator[Sandbox]:
    """A sandbox of the test's own (import ``sandbox_fixture`` into a test module to use it)."""
    server = SandboxServer("127.0.0.1", 0).start()
    yield Sandbox(server)
    server.stop()
