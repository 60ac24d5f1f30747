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
from app.api.security import issue_token, public
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
