"""OWASP API7:2023 (server side request forgery): one URL input, guarded, and kept that way.

The outbound calls are to the payment gateway (``STRIPE_API_BASE``) and the SMTP server
(``SMTP_URL``), both fixed by the operator's configuration, and to the webhook endpoints an admin
registers (SPEC §5.4): that ``url`` is the one input that names a host, checked against private,
loopback, link-local and multicast addresses when saved and again before every delivery
(``app/adapters/outbound_urls.py``; tests/unit/test_outbound_urls.py, tests/api/test_webhooks_api.py,
tests/integration/test_webhooks.py). This test keeps it so: no other parameter or body field of any
operation takes a URL or a host, by format or by name. A new one would need its own guard and tests.
"""

from __future__ import annotations

import re
from typing import Any

URLISH_NAME = re.compile(r"url|uri|href|link|callback|webhook|redirect|host|endpoint|domain", re.IGNORECASE)
URL_FORMATS = {"uri", "url", "uri-reference", "iri", "hostname", "ipv4", "ipv6"}
# URLs the API stores and shows but never fetches (and why). Each needs a test that says so.
NEVER_FETCHED = {
    # SPEC §5.1: the carrier's tracking page, shown to the customer in the shipment and its e-mail
    # (test_a_tracking_url_is_stored_and_shown_never_fetched).
    "POST /orders/{orderId}/shipments body.trackingUrl",
}


def url_inputs(schema: dict[str, Any], spec: dict[str, Any], where: str) -> list[str]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    found = [where] if schema.get("format") in URL_FORMATS else []
    for name, sub in schema.get("properties", {}).items():
        if URLISH_NAME.search(name):
            found.append(f"{where}.{name}")
        found += url_inputs(sub, spec, f"{where}.{name}")
    if "items" in schema:
        found += url_inputs(schema["items"], spec, f"{where}[]")
    return found


# The webhook endpoint's URL: guarded by app.adapters.outbound_urls at creation and at each delivery.
GUARDED = ["PATCH /admin/webhooks/{webhookId} body.url", "POST /admin/webhooks body.url"]


def test_no_operation_takes_a_url_or_a_host_from_the_client_but_the_guarded_webhook_url(client):
    spec = client.get("/openapi.json").get_json()
    found = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if not isinstance(operation, dict):
                continue
            for parameter in operation.get("parameters", []):
                where = f"{method.upper()} {path} {parameter['in']}:{parameter['name']}"
                if URLISH_NAME.search(parameter["name"]):
                    found.append(where)
                found += url_inputs(parameter.get("schema", {}), spec, where)
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                found += url_inputs(body["schema"], spec, f"{method.upper()} {path} body")
    assert sorted(f for f in found if f not in NEVER_FETCHED) == GUARDED


def test_a_tracking_url_is_stored_and_shown_never_fetched():
    """Nothing on the shipment path opens a connection: the only outbound adapters are the gateway and
    the mailer, and neither the shipments service nor the notification text takes a URL to fetch."""
    import inspect

    from app.services import notifications, shipments

    for module in (shipments, notifications):
        source = inspect.getsource(module)
        assert "requests" not in source and "urlopen" not in source and "httpx" not in source


def test_the_outbound_endpoints_come_from_configuration_only(app):
    from app.config import Settings

    assert {"STRIPE_API_BASE", "SMTP_URL"} <= set(Settings.__dataclass_fields__)
    assert app.config["STRIPE_API_BASE"].startswith("http")
