"""The idempotency protocol, for any endpoint whose repeats must not do the work twice.

One interface: the API describes the request (``KeyUse``: scope, key, hash of the request) and how
its answer is stored (``respond``: result → ``StoredResponse``, the status and body the client
got); the use case runs its transaction through ``run_idempotently``, and calls
``claim.remember(uow, result)`` in that transaction, so the answer commits together with the work.

- **claim**: the (scope, key) row is inserted in its own committed transaction; the primary key
  decides between concurrent repeats, so exactly one runs the work.
- **replay**: a repeat with the same request gets the stored answer (``Replay``); with another
  request ``ValidationFailed`` (422); while the first still runs ``IdempotencyInFlight`` (409).
- **release**: work that failed changed nothing, so its key is freed for a retry (best effort: a
  claim left behind by a dead process is taken over after ``ABANDONED_AFTER``).
- **expiry**: a key is kept ``TTL``; ``purge_expired`` deletes older ones (beat, hourly).

The repository stores the resource's id in ``order_id`` (checkout was the first user of it).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from app.domain.base import utcnow
from app.domain.errors import IdempotencyInFlight, ValidationFailed
from app.log import get_logger
from app.services.unit_of_work import UnitOfWork

log = get_logger(__name__)

T = TypeVar("T")

TTL = timedelta(hours=24)
# A claim this old without a response belongs to a request that died: another may take it over.
ABANDONED_AFTER = timedelta(minutes=2)
CLAIM_ATTEMPTS = 5


@dataclass(frozen=True)
class KeyUse:
    """The client's key, whose keys it is (the user), and the hash of the request it came with."""

    scope: uuid.UUID
    key: str
    request_hash: str


@dataclass(frozen=True)
class StoredResponse:
    """What a repeat gets back: the first answer's status and body, and the resource it made."""

    status: int
    body: dict[str, Any]
    resource_id: uuid.UUID


@dataclass(frozen=True)
class Replay:
    """The answer of the first request with this key (nothing was done this time)."""

    response: StoredResponse


@dataclass(frozen=True)
class Idempotent(Generic[T]):
    """An idempotent request: its key, and how the API stores the answer to a result ``T``."""

    use: KeyUse
    respond: Callable[[T], StoredResponse]


class Claim(Generic[T]):
    """A key this request holds: the use case remembers its answer under it before committing."""

    def __init__(self, request: Idempotent[T], claimed_at: datetime) -> None:
        self.request = request
        self.claimed_at = claimed_at

    def remember(self, uow: UnitOfWork, result: T) -> None:
        stored = self.request.respond(result)
        use = self.request.use
        uow.idempotency.remember(
            use.scope, use.key, status=stored.status, body=stored.body, order_id=stored.resource_id
        )


def run_idempotently(request: Idempotent[T] | None, work: Callable[[Claim[T] | None], T]) -> T | Replay:
    """Run ``work`` at most once per key: claim, run (it calls ``claim.remember``), or replay.

    Without a key ``work`` simply runs (with no claim). If ``work`` fails, the claim is released.
    """
    if request is None:
        return work(None)
    outcome = _claim_or_replay(request.use)
    if isinstance(outcome, Replay):
        return outcome
    claim = Claim(request, outcome)
    try:
        return work(claim)
    except BaseException:
        _release(request.use, outcome)
        raise


def _claim_or_replay(use: KeyUse) -> datetime | Replay:
    """Claim the key in its own committed transaction (the claim's time), or the first answer."""
    for _ in range(CLAIM_ATTEMPTS):
        now = utcnow()
        with UnitOfWork() as uow:
            if uow.idempotency.claim(
                use.scope,
                use.key,
                use.request_hash,
                now=now,
                expires_at=now + TTL,
                abandoned_before=now - ABANDONED_AFTER,
            ):
                uow.commit()
                return now
            row = uow.idempotency.get(use.scope, use.key)
            seen = (
                None
                if row is None
                else (row.request_hash, row.response_status, row.response_body, row.order_id)
            )
        if seen is None:
            continue  # the first request failed and freed the key just now: claim again
        request_hash, status, body, resource_id = seen
        if request_hash != use.request_hash:
            raise ValidationFailed(
                "This Idempotency-Key was used with a different request",
                {"Idempotency-Key": ["Already used with a different request body."]},
            )
        if status is None or body is None or resource_id is None:
            raise IdempotencyInFlight("A request with this Idempotency-Key is still in progress")
        return Replay(StoredResponse(status=status, body=body, resource_id=resource_id))
    raise IdempotencyInFlight("A request with this Idempotency-Key is still in progress")


def _release(use: KeyUse, claimed_at: datetime) -> None:
    """Work that failed changed nothing, so its key is free again (best effort)."""
    try:
        with UnitOfWork() as uow:
            uow.idempotency.release(use.scope, use.key, use.request_hash, claimed_at)
            uow.commit()
    except Exception as exc:
        log.warning("idempotency_release_failed", error=f"{type(exc).__name__}: {exc}")


def purge_expired() -> int:
    """Delete idempotency keys past their TTL (for the hourly purge job)."""
    with UnitOfWork() as uow:
        purged = uow.idempotency.purge_expired(utcnow())
        uow.commit()
    return purged
