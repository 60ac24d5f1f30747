"""SPEC §4 Auth: POST /auth/token, bearer tokens, and the per-address rate limit."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import jwt as pyjwt
import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask_jwt_extended import create_access_token
from sqlalchemy import update

from app.adapters.passwords import needs_rehash
from app.api.errors import PROBLEM_JSON
from app.domain.users import User
from app.extensions import db, limiter
from tests.conftest import make_app

PASSWORD = "correct horse battery"  # the password of conftest's make_user


def problem(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM_JSON
    body = response.get_json(force=True)
    assert body["status"] == status
    return body


def token_request(client, email, password=PASSWORD, address="127.0.0.1"):
    return client.post(
        "/auth/token", json={"email": email, "password": password}, environ_base={"REMOTE_ADDR": address}
    )


def some_address() -> str:
    """A client address of its own, so that no other test shares its rate-limit bucket."""
    value = uuid.uuid4().int
    return f"10.{value % 250}.{(value >> 8) % 250}.{(value >> 16) % 250 + 1}"


def test_valid_credentials_give_a_bearer_token(client, customer, app):
    response = token_request(client, customer.email)
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"accessToken", "tokenType", "expiresIn"}
    assert body["tokenType"] == "Bearer"
    assert body["expiresIn"] == app.config["JWT_EXPIRES_SECONDS"]
    claims = pyjwt.decode(body["accessToken"], app.config["SECRET_KEY"], algorithms=["HS256"])
    assert claims["sub"] == str(customer.id)
    assert claims["role"] == "customer"
    assert claims["exp"] - claims["iat"] == body["expiresIn"]


def test_the_token_opens_the_users_own_profile(client, customer):
    token = token_request(client, customer.email).get_json()["accessToken"]
    response = client.get(f"/users/{customer.id}", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


def test_email_is_matched_case_insensitively(client, customer):
    assert token_request(client, customer.email.upper()).status_code == 200


def test_admin_token_carries_the_admin_role(client, admin, app):
    token = token_request(client, admin.email).get_json()["accessToken"]
    assert pyjwt.decode(token, app.config["SECRET_KEY"], algorithms=["HS256"])["role"] == "admin"


def test_wrong_password_and_unknown_email_get_the_same_401(client, customer):
    wrong = problem(token_request(client, customer.email, "not the password"), 401)
    unknown = problem(token_request(client, "nobody@example.com"), 401)
    assert (wrong["title"], wrong["detail"], wrong["type"]) == (
        unknown["title"],
        unknown["detail"],
        unknown["type"],
    )


def test_token_request_rejects_unknown_and_missing_fields(client, customer):
    body = problem(
        client.post("/auth/token", json={"email": customer.email, "password": PASSWORD, "role": "admin"}), 422
    )
    assert "role" in body["errors"]
    assert "password" in problem(client.post("/auth/token", json={"email": customer.email}), 422)["errors"]


def test_a_tampered_token_is_401(client, customer, token_for):
    headers = token_for(customer)
    headers["Authorization"] = headers["Authorization"][:-3] + "abc"
    problem(client.get(f"/users/{customer.id}", headers=headers), 401)


def test_an_expired_token_is_401(client, customer, app):
    with app.test_request_context():
        token = create_access_token(
            identity=str(customer.id),
            additional_claims={"role": "customer", "tv": 1},
            expires_delta=timedelta(seconds=-1),
        )
    problem(client.get(f"/users/{customer.id}", headers={"Authorization": f"Bearer {token}"}), 401)


def test_a_hash_made_with_outdated_parameters_is_upgraded_at_login(client, customer, app):
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD)
    with app.app_context():
        db.session.execute(update(User).where(User.id == customer.id).values(password_hash=weak))
        db.session.commit()
    assert token_request(client, customer.email).status_code == 200
    with app.app_context():
        stored = db.session.get(User, customer.id)
        assert stored.password_hash != weak
        assert not needs_rehash(stored.password_hash)
        assert stored.token_version == customer.token_version


# ---- rate limit ------------------------------------------------------------------------------


@pytest.fixture
def limited_app(database_url, redis_url, app) -> Iterator[Flask]:
    """The app with AUTH_RATE_LIMIT=3/minute (the limit is read per request from the config)."""
    yield make_app(database_url, redis_url, AUTH_RATE_LIMIT="3/minute")
    limiter.init_app(app)  # the limiter is process-wide: bind its storage back to the session app


def test_too_many_token_requests_from_one_address_are_429_problem_with_retry_after(limited_app, customer):
    client = limited_app.test_client()
    address = some_address()
    statuses = [token_request(client, customer.email, address=address).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    response = token_request(client, customer.email, address=address)
    body = problem(response, 429)
    assert body["detail"]
    retry_after = int(response.headers["Retry-After"])
    assert 0 < retry_after <= 60


def test_failed_attempts_count_against_the_limit(limited_app, customer):
    client = limited_app.test_client()
    address = some_address()
    for _ in range(3):
        problem(token_request(client, customer.email, "wrong password", address=address), 401)
    problem(token_request(client, customer.email, address=address), 429)


def test_the_limit_is_per_client_address(limited_app, customer):
    client = limited_app.test_client()
    address = some_address()
    for _ in range(4):
        token_request(client, customer.email, address=address)
    assert token_request(client, customer.email, address=some_address()).status_code == 200


@pytest.fixture
def app_limited_per_10_seconds(database_url, redis_url, app) -> Iterator[Flask]:
    yield make_app(database_url, redis_url, AUTH_RATE_LIMIT="1/10second")
    limiter.init_app(app)


def test_retry_after_is_when_the_window_resets_not_a_fixed_guess(app_limited_per_10_seconds, customer):
    client = app_limited_per_10_seconds.test_client()
    address = some_address()
    assert token_request(client, customer.email, address=address).status_code == 200
    response = token_request(client, customer.email, address=address)
    problem(response, 429)
    assert 1 <= int(response.headers["Retry-After"]) <= 10


@pytest.fixture
def app_with_redis_down(database_url, app) -> Iterator[Flask]:
    """The app with its Redis URL on a port where nothing listens."""
    yield make_app(database_url, "redis://127.0.0.1:1/0", AUTH_RATE_LIMIT="3/minute")
    limiter.init_app(app)


def test_redis_down_never_makes_the_token_endpoint_fail(app_with_redis_down, customer):
    client = app_with_redis_down.test_client()
    address = some_address()
    # Falls back to in-memory limits: logins keep working and the limit still holds.
    assert [token_request(client, customer.email, address=address).status_code for _ in range(3)] == [200] * 3
    response = token_request(client, customer.email, address=address)
    problem(response, 429)
    assert int(response.headers["Retry-After"]) > 0
