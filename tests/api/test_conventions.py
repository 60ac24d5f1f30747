"""SPEC §3 conventions that hold for every endpoint: problem+json, request ids, docs."""

import re

from app.api.errors import PROBLEM_JSON


def assert_problem(response, status):
    assert response.status_code == status
    assert response.mimetype == PROBLEM_JSON
    body = response.get_json(force=True)
    assert body["status"] == status
    for member in ("type", "title", "detail"):
        assert isinstance(body[member], str) and body[member]
    assert "Traceback" not in response.get_data(as_text=True)
    return body


def test_unknown_route_is_a_problem(client):
    assert_problem(client.get("/no/such/route"), 404)


def test_unsupported_method_is_405_with_allow(client):
    response = client.delete("/healthz")
    assert_problem(response, 405)
    assert "GET" in response.headers["Allow"]


def test_request_id_is_echoed_when_sane_and_generated_otherwise(client):
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    generated = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"}).headers["X-Request-ID"]
    assert generated and generated != "bad id with spaces"
    assert client.get("/nope").headers["X-Request-ID"]


def test_openapi_document_and_swagger_ui_are_served(client):
    spec = client.get("/openapi.json")
    assert spec.status_code == 200
    doc = spec.get_json()
    assert doc["openapi"].startswith("3.")
    assert "/readyz" in doc["paths"]
    assert "Problem" in doc["components"]["schemas"]
    error = doc["components"]["responses"]["NOT_FOUND"]
    assert PROBLEM_JSON in error["content"]
    assert client.get("/docs").status_code == 200


def test_swagger_ui_is_served_by_the_app_not_a_cdn(client):
    page = client.get("/docs").get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert assets and all(url.startswith("/docs/assets/") for url in assets), assets
    for url in assets:
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.data) > 1000, url
        assert "max-age=86400" in asset.headers["Cache-Control"]
    assert '"validatorUrl": null' in page  # no call to swagger.io's online validator
    assert client.get("/docs/assets/../../app/config.py").status_code == 404


def test_health_and_readiness(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.get_json()
    assert body["database"]["status"] == "ok"
    assert body["redis"]["status"] == "ok"


def test_metrics_are_prometheus_text(client):
    client.get("/healthz")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    assert "oms_http_requests_total" in text
    assert "oms_http_request_duration_seconds_bucket" in text
    assert "oms_outbox_pending" in text


def test_security_headers_on_every_response(client):
    response = client.get("/healthz")
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_retry_after_is_sent_only_with_a_refusal(client, make_user):
    user = make_user()
    ok = client.post("/auth/token", json={"email": user.email, "password": "correct horse battery"})
    assert ok.status_code == 200
    assert "Retry-After" not in ok.headers
    assert "X-RateLimit-Limit" in ok.headers
