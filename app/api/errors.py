"""The one place that turns every error into an RFC 9457 ``application/problem+json`` response."""

from __future__ import annotations

import json
import math
import time
from http import HTTPStatus
from typing import Any

from flask import Flask, Response
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

from app.domain import errors as d
from app.log import current_request_id, get_logger

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "urn:oms:problem:"

log = get_logger(__name__)

# Domain error class → HTTP status; the most specific class wins (MRO order).
STATUS_BY_ERROR: dict[type[d.DomainError], int] = {
    d.BadSignature: 400,
    d.NotFound: 404,
    d.InvalidToken: 400,
    d.Unauthorized: 401,
    d.Forbidden: 403,
    d.Conflict: 409,
    d.PreconditionFailed: 412,
    d.ValidationFailed: 422,
    d.ServiceUnavailable: 503,
}

_SLUG_BY_STATUS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    412: "precondition-failed",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "validation-failed",
    428: "precondition-required",
    429: "rate-limited",
    500: "internal-error",
    503: "service-unavailable",
}


def problem(
    status: int,
    detail: str | None = None,
    *,
    title: str | None = None,
    slug: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    """Build a problem+json response; ``extra`` members (e.g. ``errors``) join the body."""
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + (slug or _SLUG_BY_STATUS.get(status, "error")),
        "title": title or phrase,
        "status": status,
        "detail": detail or title or phrase,
    }
    request_id = current_request_id()
    if request_id:
        body["requestId"] = request_id
    body.update(extra)
    response = Response(json.dumps(body, default=str), status=status, mimetype=PROBLEM_JSON)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _flatten_locations(messages: Any) -> dict[str, Any]:
    """webargs nests messages by location ({"json": {...}}); clients want the fields only."""
    if not isinstance(messages, dict):
        return {"_schema": messages}
    flat: dict[str, Any] = {}
    for location, fields in messages.items():
        if isinstance(fields, dict):
            flat.update(fields)
        else:
            flat[location] = fields
    return flat


def handle_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    headers: dict[str, str] = {}
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            headers[name] = value
    data = getattr(exc, "data", None) or {}
    extra: dict[str, Any] = {}
    detail = exc.description
    if status == 422:
        extra["errors"] = _flatten_locations(data.get("messages", {}))
        detail = "The request body or parameters failed validation"
    elif status == 400 and data.get("messages"):
        detail = "The request body is not valid JSON"
    elif status == 404:
        detail = "The requested resource was not found"
    elif status == 405:
        detail = "The method is not allowed for the requested URL"
    elif status == 413:
        detail = "The request body is larger than 1 MiB"
    elif status == 429:
        detail = f"Rate limit exceeded: {exc.description}"
        if "Retry-After" not in headers:
            headers["Retry-After"] = _seconds_until_reset()
    if data.get("message") and status != 422:
        detail = str(data["message"])
    for name, value in (data.get("headers") or {}).items():
        headers[name] = value
    return problem(status, detail, headers=headers, **extra)


def _seconds_until_reset() -> str:
    """Retry-After of a 429: when the breached window resets (Flask-Limiter keeps the later of
    this and its own value, so a fixed guess here would overstate short windows)."""
    from app.extensions import limiter

    try:
        current = limiter.current_limit
        if current is not None:
            return str(max(1, math.ceil(current.reset_at - time.time())))
    except Exception as exc:  # storage unreachable: fall back to a safe guess
        log.warning("rate_limit_reset_unknown", error=f"{type(exc).__name__}: {exc}")
    return "60"


def handle_domain_error(exc: d.DomainError) -> Response:
    status = 500
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            status = STATUS_BY_ERROR[cls]  # type: ignore[index]
            break
    headers: dict[str, str] = {}
    if isinstance(exc, d.ServiceUnavailable):
        headers["Retry-After"] = str(exc.retry_after)
    return problem(status, exc.detail, title=exc.title, slug=exc.slug, headers=headers, **exc.extra)


def handle_database_unavailable(exc: Exception) -> Response:
    log.warning("database_unavailable", error=str(exc).splitlines()[0] if str(exc) else repr(exc))
    return problem(
        503,
        "The database is unavailable; retry shortly",
        slug="database-unavailable",
        headers={"Retry-After": "5"},
    )


def handle_integrity_error(exc: sa_exc.IntegrityError) -> Response:
    log.warning("integrity_error", error=str(exc.orig) if exc.orig else str(exc))
    return problem(409, "The request conflicts with the current state of the resource")


def handle_data_error(exc: sa_exc.DataError) -> Response:
    """A value the database cannot take (a NUL character in a path segment, a number out of range).

    Schemas reject such input where they can name the field (422); this is the net behind them.
    """
    log.warning("data_error", error=str(exc.orig).splitlines()[0] if exc.orig else type(exc).__name__)
    return problem(400, "The request holds a value the database cannot store or compare")


def handle_unencodable_text(exc: UnicodeEncodeError) -> Response:
    """Text with no UTF-8 form (a lone surrogate) that reached the database driver: schemas name
    the field where they can (422 too); this is the net behind them, before anything was written."""
    log.warning("unencodable_text", error=f"{exc.reason} at {exc.start}")
    return problem(422, "The request holds text that cannot be stored (lone surrogates are not Unicode)")


def handle_unexpected(exc: Exception) -> Response:
    log.exception("unhandled_exception", error_type=type(exc).__name__)
    return problem(500, "An unexpected error occurred; it has been logged")


def register_error_handlers(app: Flask) -> None:
    """Registered after flask-smorest's own handlers, so ours win."""
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(d.DomainError, handle_domain_error)
    app.register_error_handler(sa_exc.OperationalError, handle_database_unavailable)
    app.register_error_handler(sa_exc.TimeoutError, handle_database_unavailable)
    app.register_error_handler(sa_exc.InterfaceError, handle_database_unavailable)
    app.register_error_handler(sa_exc.IntegrityError, handle_integrity_error)
    app.register_error_handler(sa_exc.DataError, handle_data_error)
    app.register_error_handler(UnicodeEncodeError, handle_unencodable_text)
    app.register_error_handler(Exception, handle_unexpected)
