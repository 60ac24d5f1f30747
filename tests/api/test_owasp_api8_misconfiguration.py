"""OWASP API8:2023 (security misconfiguration).

Debug is off in every environment; production refuses to start without a real secret and has no
default payment token; error bodies never carry a stack trace, an exception's text, SQL or a
file path; every response — errors included — carries the security headers; and CORS is closed:
no ``Access-Control-Allow-Origin`` for any origin (the API is for servers and same-origin tools,
not for scripts on other sites).
"""

from __future__ import annotations

import secrets

import pytest

from app import create_app
from app.config import ConfigError
from tests.api import test_authorization_matrix as matrix

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
INTERNALS = ("Traceback", 'File "', ".py", "sqlalchemy", "psycopg", "werkzeug", "SELECT ", "secret internals")


PRODUCTION_SECRET = secrets.token_hex(32)


def production_app(database_url, redis_url, **extra):
    return create_app(
        {
            "APP_ENV": "production",
            "SECRET_KEY": PRODUCTION_SECRET,
            "METRICS_TOKEN": "metrics-" + PRODUCTION_SECRET[:16],
            "STRIPE_WEBHOOK_SECRET": "whsec_" + PRODUCTION_SECRET[:24],
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            **extra,
        }
    )


def test_debug_is_off_and_exceptions_are_not_propagated(app, database_url, redis_url):
    for application in (app, production_app(database_url, redis_url)):
        assert application.debug is False
        assert application.config["PROPAGATE_EXCEPTIONS"] is False
    assert production_app(database_url, redis_url).config["TESTING"] is False


def test_production_refuses_a_missing_or_short_secret(database_url, redis_url):
    for secret in ("", "short"):
        with pytest.raises(ConfigError):
            production_app(database_url, redis_url, SECRET_KEY=secret)


def test_production_has_no_default_payment_token(database_url, redis_url):
    assert production_app(database_url, redis_url).config["PAYMENT_DEFAULT_TOKEN"] == ""


def error_responses(app, client, monkeypatch):
    world = matrix.build_world(app)
    owner = world.headers["owner"]
    yield client.get("/no/such/route")
    yield client.delete("/healthz")
    yield client.post("/users", data="{not json", content_type="application/json")
    yield client.post("/users", json={"email": 12, "unexpected": True})
    yield client.get("/admin/features")
    yield client.get("/admin/features", headers=owner)
    yield client.get(f"/orders/{world.owner_id}", headers=owner)
    yield client.post("/users", data="x" * (1024 * 1024 + 1), content_type="application/json")

    def explode(*args, **kwargs):
        raise RuntimeError("secret internals: password=hunter2 at /srv/app/db.py line 3")

    monkeypatch.setattr("app.services.catalogue.get_product", explode)
    yield client.get(f"/products/{world.product_id}")


def test_error_bodies_never_show_internals(app, client, monkeypatch):
    statuses = set()
    for response in error_responses(app, client, monkeypatch):
        statuses.add(response.status_code)
        text = response.get_data(as_text=True)
        assert response.headers["Content-Type"] == "application/problem+json", text
        for marker in INTERNALS:
            assert marker not in text, (response.status_code, marker, text)
        assert "hunter2" not in text
    assert statuses == {400, 401, 403, 404, 405, 413, 422, 500}


def test_every_response_carries_the_security_headers(app, client, monkeypatch):
    responses = list(error_responses(app, client, monkeypatch))
    responses += [
        client.get(path) for path in ("/healthz", "/readyz", "/metrics", "/products", "/openapi.json")
    ]
    for response in responses:
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (response.request.path, response.status_code, name)
        assert response.headers.get("X-Request-ID")


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://127.0.0.1:5000"])
def test_cors_is_closed(client, customer, token_for, origin):
    simple = client.get("/products", headers={"Origin": origin})
    preflight = client.options(
        "/orders",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    authenticated = client.get(f"/users/{customer.id}", headers={"Origin": origin, **token_for(customer)})
    for response in (simple, preflight, authenticated):
        assert "Access-Control-Allow-Origin" not in response.headers
        assert "Access-Control-Allow-Credentials" not in response.headers
