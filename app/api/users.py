"""Accounts: sign up, view, update and delete (erase) an account."""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from flask import current_app, url_for
from flask.views import MethodView
from flask_limiter.util import get_remote_address
from flask_smorest import Blueprint

from app.api.schemas import PageArgsSchema, StrictSchema, page_body, page_of
from app.api.security import admin_only, current_actor, public, self_or_admin
from app.domain.countries import is_country_code
from app.domain.users import (
    MAX_EMAIL_LENGTH,
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    ROLES,
    InvalidEmail,
    User,
    normalise_email,
)
from app.extensions import limiter
from app.services import users as service

blp = Blueprint("users", __name__, description="Accounts: sign-up, profile and erasure")


def signup_rate_limit() -> str:
    """``SIGNUP_RATE_LIMIT`` of the running app, per client address (e.g. ``10/hour``)."""
    return str(current_app.config["SIGNUP_RATE_LIMIT"])


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ma.ValidationError("Must not be blank.")


def _country(value: str) -> None:
    if not is_country_code(value):
        raise ma.ValidationError("Not an ISO 3166-1 alpha-2 country code in upper case (e.g. US, DE).")


class EmailField(ma.fields.String):
    """An e-mail address, syntax-checked and normalised (domain lower-cased), no DNS lookup."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return normalise_email(text)
        except InvalidEmail as exc:
            raise ma.ValidationError(f"Not a valid email address: {exc}") from exc


def _password_field(**kwargs: Any) -> ma.fields.String:
    return ma.fields.String(
        load_only=True,
        validate=ma.validate.Length(min=MIN_PASSWORD_LENGTH, max=MAX_PASSWORD_LENGTH),
        metadata={
            "format": "password",
            "description": f"{MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters",
        },
        **kwargs,
    )


def _name_field(**kwargs: Any) -> ma.fields.String:
    return ma.fields.String(
        validate=[ma.validate.Length(min=1, max=200), _not_blank],
        metadata={"example": "Ada Lovelace"},
        **kwargs,
    )


class AddressSchema(StrictSchema):
    line1 = ma.fields.String(
        required=True,
        validate=[ma.validate.Length(min=1, max=200), _not_blank],
        metadata={"example": "1 Main St"},
    )
    line2 = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=200))
    city = ma.fields.String(
        required=True,
        validate=[ma.validate.Length(min=1, max=100), _not_blank],
        metadata={"example": "Springfield"},
    )
    postalCode = ma.fields.String(
        required=True, validate=[ma.validate.Length(min=1, max=20), _not_blank], metadata={"example": "12345"}
    )
    country = ma.fields.String(
        required=True,
        validate=_country,
        metadata={
            "description": "ISO 3166-1 alpha-2, upper case",
            "example": "US",
            "minLength": 2,
            "maxLength": 2,
            "pattern": "^[A-Z]{2}$",
        },
    )


class UserCreateSchema(StrictSchema):
    name = _name_field(required=True)
    email = EmailField(
        required=True,
        validate=ma.validate.Length(max=MAX_EMAIL_LENGTH),
        metadata={"example": "ada@example.com"},
    )
    password = _password_field(required=True)
    address = ma.fields.Nested(AddressSchema, required=True)


class UserUpdateSchema(StrictSchema):
    """Only the fields given change; a new password revokes every token issued before.

    Changing one's own password takes ``currentPassword`` (missing → 422, wrong → 403); an admin
    setting another account's password does not."""

    name = _name_field()
    address = ma.fields.Nested(AddressSchema)
    password = _password_field()
    role = ma.fields.String(
        validate=ma.validate.OneOf(ROLES),
        metadata={
            "enum_component": "Role",
            "description": "Admins only (anyone else → 422); the last admin cannot step down (409)",
        },
    )
    currentPassword = ma.fields.String(
        load_only=True,
        validate=ma.validate.Length(min=1, max=MAX_PASSWORD_LENGTH),
        metadata={"format": "password", "description": "Required with `password` on one's own account"},
    )


class UserSchema(ma.Schema):
    userId = ma.fields.UUID(attribute="id", required=True)
    name = ma.fields.String(required=True)
    email = ma.fields.String(required=True)
    address = ma.fields.Nested(AddressSchema, allow_none=True)
    role = ma.fields.String(required=True, metadata={"enum_component": "Role"})
    createdAt = ma.fields.DateTime(attribute="created_at", required=True)
    emailVerified = ma.fields.Boolean(
        attribute="email_verified",
        required=True,
        metadata={"description": "The owner confirmed the address with the token e-mailed at sign-up"},
    )


class UserFilterSchema(PageArgsSchema):
    q = ma.fields.String(
        validate=ma.validate.Length(min=1, max=320),
        metadata={"description": "Part of the name or e-mail address, any case"},
    )
    role = ma.fields.String(validate=ma.validate.OneOf(ROLES), metadata={"enum_component": "Role"})


@blp.route("/users")
class Users(MethodView):
    @admin_only
    @blp.arguments(UserFilterSchema, location="query")
    @blp.response(200, page_of(UserSchema))
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List live accounts (admin), newest first, searched by name or e-mail and filtered by role."""
        page, page_size = args["page"], args["pageSize"]
        items, total = service.list_users(
            current_actor(), q=args.get("q"), role=args.get("role"), page=page, page_size=page_size
        )
        return page_body(items, total, page, page_size)

    @public
    # Outside the body parsing: every attempt counts, valid or not. Each sign-up costs an argon2 hash.
    @limiter.limit(signup_rate_limit, key_func=get_remote_address)
    @blp.arguments(UserCreateSchema)
    @blp.response(201, UserSchema, headers={"Location": {"schema": {"type": "string"}}})
    @blp.alt_response(409, response="CONFLICT", description="The email is already registered")
    @blp.alt_response(
        429,
        response="TOO_MANY_REQUESTS",
        description="More sign-ups from this address than SIGNUP_RATE_LIMIT",
    )
    @blp.alt_response(
        503, response="SERVICE_UNAVAILABLE", description="Too many password hashes at once in this process"
    )
    def post(self, data: dict[str, Any]) -> tuple[User, dict[str, str]]:
        """Sign up: create a customer account."""
        user = service.register_user(
            data["name"],
            data["email"],
            data["password"],
            data["address"],
            secret_key=str(current_app.config["SECRET_KEY"]),
        )
        return user, {"Location": url_for("users.UserById", user_id=user.id)}


@blp.route("/users/<uuid:user_id>")
class UserById(MethodView):
    @self_or_admin("user_id")
    @blp.response(200, UserSchema)
    def get(self, user_id: uuid.UUID) -> User:
        """View a profile (the user themself or an admin)."""
        return service.get_user(current_actor(), user_id)

    @self_or_admin("user_id")
    @blp.arguments(UserUpdateSchema)
    @blp.response(200, UserSchema)
    @blp.alt_response(403, response="FORBIDDEN", description="currentPassword is wrong")
    @blp.alt_response(409, response="CONFLICT", description="The last admin cannot become a customer")
    @blp.alt_response(
        503, response="SERVICE_UNAVAILABLE", description="Too many password hashes at once in this process"
    )
    def patch(self, data: dict[str, Any], user_id: uuid.UUID) -> User:
        """Update name, address, password, or (admins) role; a new password revokes earlier tokens."""
        current_password = data.pop("currentPassword", None)
        return service.update_user(current_actor(), user_id, data, current_password)

    @self_or_admin("user_id")
    @blp.response(204)
    def delete(self, user_id: uuid.UUID) -> None:
        """Delete the account: personal data erased, login and tokens disabled, cart emptied."""
        service.delete_user(current_actor(), user_id)
