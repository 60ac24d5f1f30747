"""Access tokens: exchange an email and password for a bearer token (rate-limited per client address)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import current_app
from flask.views import MethodView
from flask_limiter.util import get_remote_address
from flask_smorest import Blueprint

from app.api.schemas import StrictSchema
from app.api.security import issue_token, public
from app.domain.users import MAX_EMAIL_LENGTH, MAX_PASSWORD_LENGTH
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


@blp.route("/auth/token")
class Token(MethodView):
    @public
    # Outside the body parsing: malformed attempts count against the limit too.
    @limiter.limit(auth_rate_limit, key_func=get_remote_address)
    @blp.arguments(TokenRequestSchema)
    @blp.response(200, TokenSchema)
    @blp.alt_response(401, response="UNAUTHORIZED", description="Wrong email or password")
    def post(self, data: dict[str, Any]) -> dict[str, Any]:
        """Log in: exchange an email and password for a bearer token."""
        user = service.authenticate(data["email"], data["password"])
        token, expires_in = issue_token(user)
        return {"accessToken": token, "tokenType": "Bearer", "expiresIn": expires_in}
