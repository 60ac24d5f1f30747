"""SPEC §5.6: registration e-mails a verification token; POST /auth/verify-email confirms it once."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from app.api.errors import PROBLEM_JSON
from app.domain.accounts import PURPOSE_VERIFY_EMAIL, AccountToken, token_secret
from app.domain.outbox import OutboxMessage
from app.extensions import db

ADDRESS = {"line1": "1 Main St", "city": "Springfield", "postalCode": "12345", "country": "US"}


def sign_up(client):
    body = {
        "name": "Vera",
        "email": f"vera-{uuid.uuid4().hex[:8]}@example.com",
        "password": "long-enough-pw",
        "address": ADDRESS,
    }
    response = client.post("/users", json=body)
    assert response.status_code == 201
    return response.get_json()


def emailed_secret(app, user_id) -> str:
    with app.app_context():
        (token,) = db.session.scalars(select(AccountToken).where(AccountToken.user_id == uuid.UUID(user_id)))
        assert token.purpose == PURPOSE_VERIFY_EMAIL
        (message,) = db.session.scalars(
            select(OutboxMessage).where(OutboxMessage.event_type == "EmailVerificationRequested")
        )
        assert message.payload["token_id"] == str(token.id)
        return token_secret(app.config["SECRET_KEY"], PURPOSE_VERIFY_EMAIL, token.id)


def verify(client, token):
    return client.post("/auth/verify-email", json={"token": token})


def profile(client, body):
    login = client.post("/auth/token", json={"email": body["email"], "password": "long-enough-pw"})
    headers = {"Authorization": f"Bearer {login.get_json()['accessToken']}"}
    return client.get(f"/users/{body['userId']}", headers=headers).get_json()


def problem(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM_JSON
    return response.get_json()


def test_sign_up_issues_a_token_and_verifying_it_marks_the_profile(app, client):
    body = sign_up(client)
    assert body["emailVerified"] is False
    secret = emailed_secret(app, body["userId"])
    assert secret not in str(body)
    response = verify(client, secret)
    assert response.status_code == 204 and response.get_data() == b""
    assert profile(client, body)["emailVerified"] is True
    problem(verify(client, secret), 400)  # used


def test_a_reset_token_does_not_verify_an_address(app, client):
    body = sign_up(client)
    from app.domain.accounts import PURPOSE_PASSWORD_RESET

    with app.app_context():
        (token,) = db.session.scalars(select(AccountToken))
        wrong = token_secret(app.config["SECRET_KEY"], PURPOSE_PASSWORD_RESET, token.id)
    problem(verify(client, wrong), 400)
    assert profile(client, body)["emailVerified"] is False


@pytest.mark.parametrize("body", [{}, {"token": ""}, {"token": "t" * 201}, {"token": "t", "extra": 1}])
def test_bad_bodies_are_422(client, body):
    problem(client.post("/auth/verify-email", json=body), 422)


def test_an_unknown_token_is_400(client):
    problem(verify(client, "nope"), 400)
