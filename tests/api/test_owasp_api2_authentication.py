"""OWASP API2:2023 (broken authentication): every token that is not one we issued, still valid, is a 401.

The tokens are forged by hand (not with our signing helper) so that each one is wrong in exactly
one way; each must be refused with a problem+json 401 and ``WWW-Authenticate: Bearer``, never a
403 (which would mean it was believed) nor a 500.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest

PROTECTED = "/admin/features"  # admin-only: a forged admin claim that were believed would get 200


def _b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], key: str, digest: Any = hashlib.sha256) -> str:
    signing_input = f"{_b64(header)}.{_b64(claims)}"
    signature = hmac.new(key.encode(), signing_input.encode(), digest).digest()
    return f"{signing_input}.{_b64(signature)}"


@pytest.fixture
def secret(app) -> str:
    return str(app.config["JWT_SECRET_KEY"])


@pytest.fixture
def claims(admin) -> dict[str, Any]:
    """What our tokens carry, for a real admin; each test breaks one thing."""
    now = int(time.time())
    return {
        "sub": str(admin.id),
        "role": "admin",
        "tv": admin.token_version,
        "type": "access",
        "fresh": False,
        "jti": "forged",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }


HS256 = {"alg": "HS256", "typ": "JWT"}


def assert_401(client, token: str | None, raw_header: str | None = None) -> None:
    header = raw_header if raw_header is not None else f"Bearer {token}"
    response = client.get(PROTECTED, headers={"Authorization": header})
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.get_json()["status"] == 401


def test_the_forging_helper_makes_tokens_the_api_accepts(client, claims, secret):
    """The control: the same claims, correctly signed, open the admin route."""
    token = forge(HS256, claims, secret)
    assert client.get(PROTECTED, headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_an_expired_token_is_401(client, claims, secret):
    assert_401(client, forge(HS256, {**claims, "exp": int(time.time()) - 5}, secret))


def test_a_tampered_payload_is_401(client, claims, secret, customer):
    genuine = forge(HS256, {**claims, "sub": str(customer.id), "role": "customer"}, secret)
    header, _, signature = genuine.split(".")
    # The customer's signature on a payload promoted to admin.
    assert_401(client, f"{header}.{_b64(claims)}.{signature}")


def test_a_token_signed_with_another_key_is_401(client, claims):
    assert_401(client, forge(HS256, claims, "not-the-server-secret-0123456789abcdef"))


def test_alg_none_is_401(client, claims):
    assert_401(client, f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.")


def test_another_algorithm_is_401_even_with_the_right_key(client, claims, secret):
    assert_401(client, forge({"alg": "HS512", "typ": "JWT"}, claims, secret, hashlib.sha512))


def test_an_asymmetric_algorithm_header_is_401(client, claims, secret):
    """RS256 header over an HMAC signature: the classic key-confusion attempt."""
    assert_401(client, forge({"alg": "RS256", "typ": "JWT"}, claims, secret))


@pytest.mark.parametrize("claim", ["sub", "exp", "tv"])
def test_a_token_missing_a_required_claim_is_401(client, claims, secret, claim):
    assert_401(client, forge(HS256, {k: v for k, v in claims.items() if k != claim}, secret))


@pytest.mark.parametrize("subject", ["not-a-uuid", 42, ["x"], "00000000-0000-0000-0000-000000000000"])
def test_a_subject_that_is_no_user_is_401(client, claims, secret, subject):
    assert_401(client, forge(HS256, {**claims, "sub": subject}, secret))


def test_a_deleted_users_token_is_401(client, customer, token_for):
    headers = token_for(customer)
    assert client.delete(f"/users/{customer.id}", headers=headers).status_code == 204
    response = client.get(f"/users/{customer.id}", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_a_token_from_before_a_password_change_is_401(client, customer, token_for):
    old = token_for(customer)
    changed = client.patch(
        f"/users/{customer.id}",
        json={"password": "a brand new password", "currentPassword": "correct horse battery"},
        headers=old,
    )
    assert changed.status_code == 200
    assert client.get(f"/users/{customer.id}", headers=old).status_code == 401


@pytest.mark.parametrize(
    "header", ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc", "Bearer a.b", "Bearer ....."]
)
def test_malformed_authorization_headers_are_401(client, header):
    assert_401(client, None, raw_header=header)


def test_a_customer_cannot_promote_itself_by_editing_the_role_claim(client, customer, secret):
    """A customer knows its own claims; rewriting role without the key fails the signature."""
    now = int(time.time())
    forged = f"{_b64(HS256)}.{_b64({'sub': str(customer.id), 'role': 'admin', 'tv': 1, 'exp': now + 60})}.x"
    assert_401(client, forged)
