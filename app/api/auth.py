"""Access tokens: exchange an email and password for a bearer token (rate-limited per client address)."""

from __future__ import annotations

import hashlib
from typing import Any

import marshmallow as ma
from flask import Response, current_app, request
from flask.views import MethodView
from flask_limiter.util import get_remote_address
from flask_smorest import Blueprint

from app.api.schemas import StrictSchema
from app.api.security import authenticated, current_actor, issue_token, public
from app.domain.accounts import MAX_TOKEN_LENGTH
from app.domain.users import MAX_EMAIL_LENGTH, MAX_PASSWORD_LENGTH, email_key
from app.extensions import limiter
from app.services import users as service

blp = Blueprint("auth", __name__, description="Access tokens")


class TokenRequestSchema(StrictSchema):
    # Not checked for shape: anything that is not a registered email is simply a wrong credential.
    email = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=1, max=MAX_EMAIL_LENGTH),
        metadata={"example": "demo@example.com"},
    )
    password = ma.fields.String(
        required=True,
        load_only=True,
        validate=ma.validate.Length(min=1, max=MAX_PASSWORD_LENGTH),
        metadata={"format": "password", "example": "demo-password"},
    )


class TokenSchema(ma.Schema):
    accessToken = ma.fields.String(required=True)
    tokenType = ma.fields.String(required=True, metadata={"example": "Bearer"})
    expiresIn = ma.fields.Integer(required=True, metadata={"description": "Seconds until the token expires"})


def auth_rate_limit() -> str:
    """``AUTH_RATE_LIMIT`` of the running app, read per request (e.g. ``10/minute``)."""
    return str(current_app.config["AUTH_RATE_LIMIT"])


def account_rate_limit() -> str:
    """``AUTH_ACCOUNT_RATE_LIMIT``: failed logins per account, from any number of addresses."""
    return str(current_app.config["AUTH_ACCOUNT_RATE_LIMIT"])


def account_key() -> str:
    """The account a login names: its e-mail by the one comparison rule (so case does not dodge it)."""
    body = request.get_json(silent=True)
    email = body.get("email") if isinstance(body, dict) else None
    if not isinstance(email, str) or not email or len(email) > MAX_EMAIL_LENGTH:
        return "account:-"
    # Hashed: no address in Redis keys, and a bounded key length.
    digest = hashlib.sha256(email_key(email).encode("utf-8", "surrogatepass")).hexdigest()
    return f"account:{digest[:32]}"


def _failed_login(response: Response) -> bool:
    return response.status_code == 401


@blp.route("/auth/token")
class Token(MethodView):
    @public
    # Outside the body parsing: malformed attempts count against the limit too.
    @limiter.limit(auth_rate_limit, key_func=get_remote_address)
    # Only failures count here: an owner logging in is never locked out by their own successes.
    @limiter.limit(account_rate_limit, key_func=account_key, deduct_when=_failed_login)
    @blp.arguments(TokenRequestSchema)
    @blp.response(200, TokenSchema)
    @blp.alt_response(401, response="UNAUTHORIZED", description="Wrong email or password")
    @blp.alt_response(
        429,
        response="TOO_MANY_REQUESTS",
        description="More attempts from this address than AUTH_RATE_LIMIT, or more failed logins of "
        "this account than AUTH_ACCOUNT_RATE_LIMIT",
    )
    @blp.alt_response(
        503, response="SERVICE_UNAVAILABLE", description="Too many password checks at once in this process"
    )
    def post(self, data: dict[str, Any]) -> dict[str, Any]:
        """Log in: exchange an email and password for a bearer token."""
        user = service.authenticate(data["email"], data["password"])
        token, expires_in = issue_token(user)
        return {"accessToken": token, "tokenType": "Bearer", "expiresIn": expires_in}


class PasswordResetRequestSchema(StrictSchema):
    # Not checked for shape: an address that is not registered gets the same answer as one that is.
    email = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=1, max=MAX_EMAIL_LENGTH),
        metadata={"example": "demo@example.com"},
    )


class PasswordResetConfirmSchema(StrictSchema):
    token = ma.fields.String(
        required=True,
        load_only=True,
        validate=ma.validate.Length(min=1, max=MAX_TOKEN_LENGTH),
        metadata={"description": "The token from the password-reset e-mail"},
    )
    password = ma.fields.String(
        required=True,
        load_only=True,
        validate=ma.validate.Length(min=1, max=MAX_PASSWORD_LENGTH),
        metadata={"format": "password", "description": "The new password (at least 8 characters)"},
    )


@blp.route("/auth/password-reset")
class PasswordReset(MethodView):
    @public
    @limiter.limit(auth_rate_limit, key_func=get_remote_address)
    @blp.arguments(PasswordResetRequestSchema)
    @blp.response(202, description="Accepted, whatever the address: a live account is e-mailed a token")
    @blp.alt_response(
        429, response="TOO_MANY_REQUESTS", description="More requests from this address than AUTH_RATE_LIMIT"
    )
    def post(self, data: dict[str, Any]) -> Response:
        """Ask for a password-reset e-mail (single-use token, valid PASSWORD_RESET_TTL_SECONDS).

        The answer is the same for any address, registered or not; the token is in the e-mail only.
        """
        config = current_app.config
        service.request_password_reset(
            data["email"],
            secret_key=str(config["SECRET_KEY"]),
            ttl_seconds=int(config["PASSWORD_RESET_TTL_SECONDS"]),
        )
        return Response(status=202)


@blp.route("/auth/password-reset/confirm")
class PasswordResetConfirm(MethodView):
    @public
    @limiter.limit(auth_rate_limit, key_func=get_remote_address)
    @blp.arguments(PasswordResetConfirmSchema)
    @blp.response(204, description="Password set; every earlier access token revoked")
    @blp.alt_response(400, response="BAD_REQUEST", description="The token is unknown, used or expired")
    @blp.alt_response(
        429, response="TOO_MANY_REQUESTS", description="More requests from this address than AUTH_RATE_LIMIT"
    )
    @blp.alt_response(
        503, response="SERVICE_UNAVAILABLE", description="Too many password hashes at once in this process"
    )
    def post(self, data: dict[str, Any]) -> Response:
        """Set a new password with the e-mailed token; every earlier access token stops working."""
        service.confirm_password_reset(data["token"], data["password"])
        return Response(status=204)


@blp.route("/auth/logout")
class Logout(MethodView):
    @authenticated
    @blp.response(204, description="Every access token of the caller revoked (on every device)")
    @blp.alt_response(401, response="UNAUTHORIZED", description="No token, or a token no longer valid")
    def post(self) -> Response:
        """Log out: every access token of the caller stops working (not only this one)."""
        service.logout(current_actor())
        return Response(status=204)


class VerifyEmailSchema(StrictSchema):
    token = ma.fields.String(
        required=True,
        load_only=True,
        validate=ma.validate.Length(min=1, max=MAX_TOKEN_LENGTH),
        metadata={"description": "The token from the e-mail sent at sign-up"},
    )


@blp.route("/auth/verify-email")
class VerifyEmail(MethodView):
    @public
    @limiter.limit(auth_rate_limit, key_func=get_remote_address)
    @blp.arguments(VerifyEmailSchema)
    @blp.response(204, description="The address is verified (the profile's emailVerified is true)")
    @blp.alt_response(400, response="BAD_REQUEST", description="The token is unknown, used or expired")
    @blp.alt_response(
        429, response="TOO_MANY_REQUESTS", description="More requests from this address than AUTH_RATE_LIMIT"
    )
    def post(self, data: dict[str, Any]) -> Response:
        """Confirm one's e-mail address with the token e-mailed at sign-up (no access token needed)."""
        service.verify_email(data["token"])
        return Response(status=204)
