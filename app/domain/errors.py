"""Domain errors: exceptions with a meaning. ``app/api/errors.py`` maps them to HTTP."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base class. ``extra`` members are added to the problem body."""

    title = "Domain error"
    slug = "domain-error"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra


class NotFound(DomainError):
    """The resource does not exist, or belongs to someone else (never reveal which)."""

    title = "Not Found"
    slug = "not-found"


class Unauthorized(DomainError):
    title = "Unauthorized"
    slug = "unauthorized"


class Forbidden(DomainError):
    title = "Forbidden"
    slug = "forbidden"


class InvalidToken(DomainError):
    """An account token that is unknown, already used or expired (400: never says which)."""

    title = "Invalid token"
    slug = "invalid-token"


class Conflict(DomainError):
    title = "Conflict"
    slug = "conflict"


class LastAdmin(Conflict):
    """The change would leave the shop without a live admin account."""

    slug = "last-admin"


class DuplicateEmail(Conflict):
    title = "Email already registered"
    slug = "duplicate-email"


class InsufficientStock(Conflict):
    """``errors`` lists ``{productId, requested, available}`` for every short line."""

    title = "Insufficient stock"
    slug = "insufficient-stock"

    def __init__(self, lines: list[dict[str, Any]], detail: str | None = None) -> None:
        super().__init__(detail or "Not enough stock for one or more lines", errors=lines)


class InvalidTransition(Conflict):
    title = "Invalid status transition"
    slug = "invalid-transition"


class VersionConflict(Conflict):
    title = "Version conflict"
    slug = "version-conflict"

    def __init__(self, current_version: int, detail: str | None = None) -> None:
        super().__init__(
            detail or f"The resource is at version {current_version}", currentVersion=current_version
        )


class TotalChanged(Conflict):
    """The order would cost what the client did not expect (a price changed since the cart was shown)."""

    title = "Total changed"
    slug = "total-changed"

    def __init__(self, expected_total: Any, total_amount: Any) -> None:
        super().__init__(
            f"The order's total at current prices is {total_amount}, not the expected {expected_total}",
            # JSON numbers with two decimals, like every amount in a body (float of a 2-place Decimal
            # prints exactly as written).
            expectedTotal=float(expected_total),
            totalAmount=float(total_amount),
        )


class IdempotencyInFlight(Conflict):
    title = "Request in progress"
    slug = "idempotency-in-flight"


class PreconditionFailed(DomainError):
    title = "Precondition Failed"
    slug = "precondition-failed"


class ValidationFailed(DomainError):
    """Input that is well-formed but not acceptable; ``errors`` maps fields to messages."""

    title = "Unprocessable Content"
    slug = "validation-failed"

    def __init__(self, detail: str, errors: dict[str, Any] | None = None) -> None:
        super().__init__(detail, errors=errors or {})


class BadSignature(DomainError):
    """A webhook whose signature is missing, wrong or stale: 400, nothing changes."""

    title = "Bad Request"
    slug = "bad-signature"


class ServiceUnavailable(DomainError):
    title = "Service Unavailable"
    slug = "service-unavailable"

    def __init__(self, detail: str | None = None, retry_after: int = 5, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after = retry_after


class FeatureDisabled(ServiceUnavailable):
    title = "Feature disabled"
    slug = "feature-disabled"
