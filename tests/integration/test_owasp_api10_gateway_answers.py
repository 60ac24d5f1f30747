"""OWASP API10:2023 (unsafe consumption of APIs): what the payment gateway answers is not trusted.

A fake gateway on a loopback port answers ``POST /v1/payment_intents`` with bodies a broken or
hostile upstream could send. The adapter must turn each into one of its own errors — a decline, a
rejection or "unavailable, retry later" — never let an ``AttributeError``/``KeyError`` escape (that
would crash the charge task) and never report a success the gateway did not clearly give for the
amount, currency and payment asked.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from app.adapters.gateway import GatewayError, StripeGateway

PAYMENT_ID = uuid.UUID("0190c7e2-0000-7000-8000-000000000001")
ORDER_ID = uuid.UUID("0190c7e2-0000-7000-8000-000000000002")


class FakeGateway:
    def __init__(self) -> None:
        self.status = 200
        self.body: str = "{}"
        self.content_type = "application/json"
        self.server = make_server("127.0.0.1", 0, self.wsgi, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @Request.application
    def wsgi(self, request: Request) -> Response:
        return Response(self.body, status=self.status, content_type=self.content_type)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"


@pytest.fixture
def fake() -> Iterator[FakeGateway]:
    server = FakeGateway()
    server.thread.start()
    yield server
    server.server.shutdown()


def intent(**fields: Any) -> str:
    body = {
        "id": "pi_fake",
        "object": "payment_intent",
        "amount": 1250,
        "currency": "usd",
        "status": "succeeded",
        "latest_charge": "ch_fake",
        "metadata": {"paymentId": str(PAYMENT_ID), "orderId": str(ORDER_ID)},
    }
    body.update(fields)
    return json.dumps({k: v for k, v in body.items() if v is not None})


def charge(fake: FakeGateway) -> Any:
    gateway = StripeGateway("sk_test_fake", fake.url, timeout=2)
    return gateway.charge(PAYMENT_ID, ORDER_ID, Decimal("12.50"), "USD", "pm_card_visa")


def test_a_well_formed_success_is_accepted(fake):
    fake.body = intent()
    result = charge(fake)
    assert result.reference == "pi_fake"


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (200, "this is not json", "text/plain"),
        (200, "{", "application/json"),
        (200, "[]", "application/json"),
        (200, "{}", "application/json"),
        (200, '{"object": "payment_intent"}', "application/json"),
        (502, "<html>Bad gateway</html>", "text/html"),
        (500, '{"error": "not the shape stripe uses"}', "application/json"),
        (404, "{}", "application/json"),
    ],
    ids=["text", "truncated", "array", "empty-object", "no-status", "html-502", "odd-500", "404"],
)
def test_a_malformed_answer_is_a_gateway_error_not_a_crash(fake, status, body, content_type):
    fake.status, fake.body, fake.content_type = status, body, content_type
    with pytest.raises(GatewayError):
        charge(fake)


@pytest.mark.parametrize(
    "fields",
    [
        {"amount": 1},
        {"amount": None},
        {"amount": "1250"},
        {"currency": "eur"},
        {"status": None},
        {"id": None},
        {"metadata": {"paymentId": str(uuid.uuid4())}},
    ],
    ids=[
        "other-amount",
        "no-amount",
        "string-amount",
        "other-currency",
        "no-status",
        "no-id",
        "other-payment",
    ],
)
def test_a_success_that_does_not_match_the_request_is_not_taken_as_paid(fake, fields):
    fake.body = intent(**fields)
    with pytest.raises(GatewayError):
        charge(fake)


def test_a_processing_answer_is_not_taken_as_paid(fake):
    """Release 2: ``processing`` is an answer of its own (PROCESSING), never a success."""
    fake.body = intent(status="processing")
    assert charge(fake).status == "processing"
