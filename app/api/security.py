"""Authentication and authorization: every endpoint declares its access policy here, once.

A view without a policy cannot be registered (``check_policies`` runs in ``create_app``), and the
policy is enforced by one ``before_request`` hook, so a new endpoint cannot forget the check.
Resource-level ownership (orders, payments) is decided by ``Actor.may_access`` in the services,
which answer ``NotFound`` for another user's resource.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, Response, current_app, g, request
from flask_jwt_extended import create_access_token, get_jwt, verify_jwt_in_request
from flask_limiter.util import get_remote_address
from flask_smorest import Blueprint

from app.api.errors import problem
from app.api.openapi import response_ref
from app.domain.actors import Actor
from app.domain.errors import Forbidden, NotFound, Unauthorized
from app.domain.users import User
from app.extensions import jwt
from app.log import current_request_id
from app.services.users import token_holder_role

F = TypeVar("F", bound=Callable[..., Any])

PUBLIC = "public"
AUTHENTICATED = "authenticated"
ADMIN = "admin"
SELF_OR_ADMIN = "self_or_admin"
SELF_ONLY = "self_only"

# Endpoints that serve the API's own documentation.
EXEMPT_ENDPOINTS = {"static", "api-docs.openapi_json", "api-docs.openapi_swagger_ui"}


@dataclass(frozen=True)
class Policy:
    kind: str
    user_param: str | None = None

    @property
    def needs_token(self) -> bool:
        return self.kind != PUBLIC


def _declare(policy: Policy) -> Callable[[F], F]:
    doc: dict[str, Any] = {}
    if policy.needs_token:
        doc["security"] = [{"bearerAuth": []}]
        responses = {"401": response_ref("UNAUTHORIZED")}
        if policy.kind in (ADMIN, SELF_ONLY):
            responses["403"] = response_ref("FORBIDDEN")
        if policy.kind in (SELF_OR_ADMIN, SELF_ONLY):
            responses["404"] = response_ref("NOT_FOUND")
        doc["responses"] = responses

    def decorator(func: F) -> F:
        wrapped = Blueprint.doc(**doc)(func) if doc else func

        @wraps(wrapped)
        def view(*args: Any, **kwargs: Any) -> Any:
            return wrapped(*args, **kwargs)

        view._access_policy = policy  # type: ignore[attr-defined]
        return view  # type: ignore[return-value]

    return decorator


def public(func: F) -> F:
    """Anyone, no token."""
    return _declare(Policy(PUBLIC))(func)


def authenticated(func: F) -> F:
    """Any valid token; ownership of the resource is checked by the service."""
    return _declare(Policy(AUTHENTICATED))(func)


def admin_only(func: F) -> F:
    """Admins; a customer gets 403."""
    return _declare(Policy(ADMIN))(func)


def self_or_admin(user_param: str = "user_id") -> Callable[[F], F]:
    """The user named in the path, or an admin; another customer gets 404."""
    return _declare(Policy(SELF_OR_ADMIN, user_param))


def self_only(user_param: str = "user_id") -> Callable[[F], F]:
    """Only the user named in the path (carts, checkout): another customer 404, an admin 403."""
    return _declare(Policy(SELF_ONLY, user_param))


def policy_of(app: Flask, endpoint: str, method: str) -> Policy | None:
    view = app.view_functions.get(endpoint)
    if view is None:
        return None
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        name = "get" if method == "HEAD" else method.lower()
        view = getattr(view_class, name, None)
    return getattr(view, "_access_policy", None)


def check_policies(app: Flask) -> None:
    """Fail at start-up if any route lacks a declared policy."""
    missing = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in EXEMPT_ENDPOINTS:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            if policy_of(app, rule.endpoint, method) is None:
                missing.append(f"{method} {rule.rule}")
    if missing:
        raise RuntimeError("Routes without an access policy: " + ", ".join(missing))


def current_actor() -> Actor:
    actor = g.get("actor")
    if actor is None:
        raise RuntimeError("current_actor() outside an authenticated view")
    return actor  # type: ignore[no-any-return]


def _path_user(param: str) -> uuid.UUID | None:
    value = (request.view_args or {}).get(param)
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError):
        return None


def enforce_policy() -> None:
    """before_request: authenticate and authorize according to the view's declared policy."""
    if request.endpoint is None or request.endpoint in EXEMPT_ENDPOINTS or request.method == "OPTIONS":
        return
    policy = policy_of(current_app, request.endpoint, request.method)
    if policy is None:
        raise Forbidden("No access policy is declared for this endpoint")
    if not policy.needs_token:
        return
    verify_jwt_in_request()
    claims = get_jwt()
    # The role as the database has it now (read with the token version, in _is_revoked), never the
    # token's claim: a demotion takes effect at the next request, not when the token expires.
    role = g.pop("_token_user_role", None)
    if role is None:
        raise Unauthorized("The bearer token is invalid")
    actor = Actor(uuid.UUID(claims["sub"]), role, current_request_id())
    g.actor = actor
    if policy.kind == ADMIN and not actor.is_admin:
        raise Forbidden("This operation is reserved to administrators")
    if policy.kind in (SELF_OR_ADMIN, SELF_ONLY):
        target = _path_user(policy.user_param or "user_id")
        if target == actor.user_id:
            return
        if policy.kind == SELF_OR_ADMIN and actor.is_admin:
            return
        if policy.kind == SELF_ONLY and actor.is_admin:
            raise Forbidden("Carts and checkout belong to their user alone")
        raise NotFound("The requested resource was not found")


def subject_or_address() -> str:
    """Rate-limit key: the authenticated user, else the client address.

    The rate limits run after the access policy (``create_app`` registers them in that order), so
    on an authenticated view the token was verified once already and ``g.actor`` is its user; a
    request without a valid token got its 401 before reaching the limit.
    """
    actor = g.get("actor")
    if actor is not None:
        return f"user:{actor.user_id}"
    return f"address:{get_remote_address()}"


def issue_token(user: User) -> tuple[str, int]:
    """A signed, expiring access token carrying the role and the user's token version."""
    expires = int(current_app.config["JWT_EXPIRES_SECONDS"])
    token = create_access_token(
        identity=str(user.id),
        additional_claims={"role": user.role, "tv": user.token_version},
        expires_delta=timedelta(seconds=expires),
    )
    return token, expires


def _unauthorized(detail: str) -> Response:
    return problem(401, detail, headers={"WWW-Authenticate": "Bearer"})


def init_security(app: Flask) -> None:
    @jwt.unauthorized_loader
    def _missing(reason: str) -> Response:
        return _unauthorized("A bearer token is required")

    @jwt.invalid_token_loader
    def _invalid(reason: str) -> Response:
        return _unauthorized("The bearer token is invalid")

    @jwt.expired_token_loader
    def _expired(header: dict[str, Any], payload: dict[str, Any]) -> Response:
        return _unauthorized("The bearer token has expired")

    @jwt.revoked_token_loader
    def _revoked(header: dict[str, Any], payload: dict[str, Any]) -> Response:
        return _unauthorized("The bearer token has been revoked")

    @jwt.user_lookup_error_loader
    def _unknown_user(header: dict[str, Any], payload: dict[str, Any]) -> Response:
        return _unauthorized("The bearer token's user no longer exists")

    @jwt.token_in_blocklist_loader
    def _is_revoked(header: dict[str, Any], payload: dict[str, Any]) -> bool:
        # A deleted user, or a token issued before the user's token version was bumped. A token
        # without an expiry is refused too: we never issue one, and it would never die.
        if not isinstance(payload.get("exp"), int):
            return True
        try:
            user_id = uuid.UUID(str(payload.get("sub")))
        except ValueError:
            return True
        role = token_holder_role(user_id, payload.get("tv"))
        if role is None:
            return True
        g._token_user_role = role
        return False

    app.before_request(enforce_policy)
