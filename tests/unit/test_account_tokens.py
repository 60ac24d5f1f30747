"""Account tokens (password reset): derivation, digest, expiry and single use, and the masked body."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from app.adapters.email_templates import render_email
from app.domain.accounts import (
    PURPOSE_PASSWORD_RESET,
    PURPOSE_VERIFY_EMAIL,
    TOKEN_MASK,
    new_account_token,
    signed_token_id,
    token_digest,
    token_secret,
)

KEY = "k" * 40
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def test_the_secret_is_derived_again_from_the_token_id_and_only_its_digest_is_stored():
    token, secret = new_account_token(uuid.uuid4(), PURPOSE_PASSWORD_RESET, KEY, timedelta(hours=1), NOW)
    assert token_secret(KEY, PURPOSE_PASSWORD_RESET, token.id) == secret
    assert token.token_hash == token_digest(secret)
    assert secret not in token.token_hash and len(token.token_hash) == 64
    assert signed_token_id(KEY, PURPOSE_PASSWORD_RESET, secret) == token.id


def test_a_secret_depends_on_the_key_the_purpose_and_the_token():
    token_id = uuid.uuid4()
    secret = token_secret(KEY, PURPOSE_PASSWORD_RESET, token_id)
    assert token_secret("x" * 40, PURPOSE_PASSWORD_RESET, token_id) != secret
    assert token_secret(KEY, PURPOSE_VERIFY_EMAIL, token_id) != secret
    assert token_secret(KEY, PURPOSE_PASSWORD_RESET, uuid.uuid4()) != secret
    # A secret signed for another purpose or under another key does not verify.
    assert signed_token_id(KEY, PURPOSE_VERIFY_EMAIL, secret) is None
    assert signed_token_id("x" * 40, PURPOSE_PASSWORD_RESET, secret) is None
    assert signed_token_id(KEY, PURPOSE_PASSWORD_RESET, f"{token_id}.forged") is None
    assert signed_token_id(KEY, PURPOSE_PASSWORD_RESET, "\\ud800") is None


def test_a_token_expires_after_its_ttl_and_is_usable_once():
    token, _ = new_account_token(uuid.uuid4(), PURPOSE_PASSWORD_RESET, KEY, timedelta(seconds=3600), NOW)
    assert token.expires_at == NOW + timedelta(seconds=3600)
    assert token.usable(NOW)
    assert token.usable(NOW + timedelta(seconds=3599))
    assert not token.usable(NOW + timedelta(seconds=3600))
    token.used_at = NOW + timedelta(seconds=1)
    assert not token.usable(NOW + timedelta(seconds=2))


def test_two_tokens_never_share_a_secret():
    secrets = {
        new_account_token(uuid.uuid4(), PURPOSE_PASSWORD_RESET, KEY, timedelta(hours=1), NOW)[1]
        for _ in range(50)
    }
    assert len(secrets) == 50


def test_the_stored_body_of_the_reset_e_mail_shows_the_token_masked():
    rendered = render_email("PasswordResetRequested", {"name": "Ada", "token": TOKEN_MASK, "ttl_minutes": 60})
    assert rendered.subject == "Reset your password"
    assert TOKEN_MASK in rendered.text
    assert "60 minutes" in rendered.text
