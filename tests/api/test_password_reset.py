"""SPEC §5.6 password reset over the API: same answer for any address, single-use tokens, revocation.

The e-mail's secret is what the delivery derives from the token row (``token_secret``): here the
test plays the delivery to get it; tests/integration/test_password_reset.py reads it from a real
SMTP server.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from app.api.errors import PROBLEM_JSON
from app.domain.accounts import PURPOSE_PASSWORD_RESET, AccountToken, token_secret
from app.domain.base import utcnow
from app.domain.outbox import OutboxMessage
from app.extensions import db
from tests.conftest import make_app

PASSWORD = "correct horse battery"  # conftest's make_user
NEW_PASSWORD = "a brand new password"


def some_address() -> str:
    value = uuid.uuid4().int
    return f"10.{value % 250}.{(value >> 8) % 250}.{(value >> 16) % 250 + 1}"


def problem(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM_JSON
    body = response.get_json(force=True)
    assert body["status"] == status
    return body


def request_reset(client, email):
    return client.post(
        "/auth/password-reset", json={"email": email}, environ_base={"REMOTE_ADDR": some_address()}
    )


def confirm(client, token, password=NEW_PASSWORD):
    return client.post(
        "/auth/password-reset/confirm",
        json={"token": token, "password": password},
        environ_base={"REMOTE_ADDR": some_address()},
    )


def tokens(app) -> list[AccountToken]:
    with app.app_context():
        rows = list(db.session.scalars(select(AccountToken).order_by(AccountToken.created_at)))
        db.session.expunge_all()
        return rows


def the_emailed_secret(app) -> str:
    (token,) = tokens(app)
    return token_secret(app.config["SECRET_KEY"], PURPOSE_PASSWORD_RESET, token.id)


def login(client, email, password):
    return client.post("/auth/token", json={"email": email, "password": password})


def comparable(response):
    headers = {k: v for k, v in response.headers.items() if k not in ("X-Request-ID", "Date")}
    return response.status_code, response.get_data(), headers


def test_known_and_unknown_addresses_get_identical_answers(app, client, customer):
    known = request_reset(client, customer.email)
    unknown = request_reset(client, f"nobody-{uuid.uuid4().hex[:8]}@example.com")
    malformed_but_string = request_reset(client, "not an address")
    assert known.status_code == 202
    assert comparable(known) == comparable(unknown) == comparable(malformed_but_string)
    assert known.get_data() == b""
    # Only the live account got a token, stored as a digest; the outbox event names its id only.
    (token,) = tokens(app)
    assert token.user_id == customer.id and len(token.token_hash) == 64
    secret = the_emailed_secret(app)
    with app.app_context():
        (message,) = db.session.scalars(
            select(OutboxMessage).where(OutboxMessage.event_type == "PasswordResetRequested")
        )
        assert message.payload["token_id"] == str(token.id)
        assert secret not in str(message.payload)


def test_a_deleted_account_gets_the_same_answer_and_no_token(app, client, customer, token_for):
    assert client.delete(f"/users/{customer.id}", headers=token_for(customer)).status_code == 204
    assert request_reset(client, customer.email).status_code == 202
    assert tokens(app) == []


def test_confirming_sets_the_password_and_revokes_earlier_tokens(app, client, customer):
    old = login(client, customer.email, PASSWORD).get_json()["accessToken"]
    assert request_reset(client, customer.email).status_code == 202
    response = confirm(client, the_emailed_secret(app))
    assert response.status_code == 204 and response.get_data() == b""
    problem(client.get(f"/users/{customer.id}", headers={"Authorization": f"Bearer {old}"}), 401)
    problem(login(client, customer.email, PASSWORD), 401)
    new = login(client, customer.email, NEW_PASSWORD)
    assert new.status_code == 200
    headers = {"Authorization": f"Bearer {new.get_json()['accessToken']}"}
    assert client.get(f"/users/{customer.id}", headers=headers).status_code == 200
    (token,) = tokens(app)
    assert token.used_at is not None


def test_a_token_works_once(app, client, customer):
    request_reset(client, customer.email)
    secret = the_emailed_secret(app)
    assert confirm(client, secret).status_code == 204
    body = problem(confirm(client, secret, "yet another password"), 400)
    assert "token" in body["detail"].lower()
    assert login(client, customer.email, NEW_PASSWORD).status_code == 200


def test_an_expired_token_is_refused_and_changes_nothing(app, client, customer):
    request_reset(client, customer.email)
    secret = the_emailed_secret(app)
    with app.app_context():
        db.session.execute(update(AccountToken).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    problem(confirm(client, secret), 400)
    assert login(client, customer.email, PASSWORD).status_code == 200


@pytest.mark.parametrize("token", ["unknown", "x" * 200, "0190a7c2-0000-7000-8000-000000000000.AAAA"])
def test_an_unknown_token_is_400(client, customer, token):
    problem(confirm(client, token), 400)


def test_the_ttl_comes_from_password_reset_ttl_seconds(app, database_url, redis_url, customer):
    short = make_app(database_url, redis_url, PASSWORD_RESET_TTL_SECONDS=120)
    short.test_client().post("/auth/password-reset", json={"email": customer.email})
    (token,) = tokens(app)
    assert token.expires_at - token.created_at == timedelta(seconds=120)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/auth/password-reset", {}, "email"),
        ("/auth/password-reset", {"email": ""}, "email"),
        ("/auth/password-reset", {"email": "a@example.com", "role": "admin"}, "role"),
        ("/auth/password-reset/confirm", {"token": "t"}, "password"),
        ("/auth/password-reset/confirm", {"password": NEW_PASSWORD}, "token"),
        ("/auth/password-reset/confirm", {"token": "t" * 201, "password": NEW_PASSWORD}, "token"),
    ],
)
def test_bad_bodies_are_422(client, path, body, field):
    response = client.post(path, json=body, environ_base={"REMOTE_ADDR": some_address()})
    assert field in problem(response, 422)["errors"]


def test_a_short_new_password_is_422_and_leaves_the_token_usable(app, client, customer):
    request_reset(client, customer.email)
    secret = the_emailed_secret(app)
    assert "password" in problem(confirm(client, secret, "short"), 422)["errors"]
    assert confirm(client, secret).status_code == 204


def test_malformed_json_is_400(client):
    response = client.post("/auth/password-reset", data="{", content_type="application/json")
    problem(response, 400)


def test_reset_requests_are_rate_limited_per_client_address(database_url, redis_url):
    limited = make_app(database_url, redis_url, AUTH_RATE_LIMIT="2/minute").test_client()
    for path, body in (
        ("/auth/password-reset", {"email": "someone@example.com"}),
        ("/auth/password-reset/confirm", {"token": "nope", "password": NEW_PASSWORD}),
    ):
        address = some_address()
        codes = [
            limited.post(path, json=body, environ_base={"REMOTE_ADDR": address}).status_code for _ in range(3)
        ]
        assert codes[2] == 429, codes
        response = limited.post(path, json=body, environ_base={"REMOTE_ADDR": address})
        assert "Retry-After" in response.headers
