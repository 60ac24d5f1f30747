"""The unit of work: one transaction, with the repositories that work in it as attributes.

Every use case opens one (``with UnitOfWork() as uow``), reaches data only through
``uow.orders``, ``uow.products`` … and calls ``uow.commit()``; leaving the block without it rolls
back. On commit the domain events that the aggregates handed out by the repositories recorded
(``order.events``), and those the service recorded itself (``uow.record``), are written to the
outbox in the same transaction; after the commit they are published to the queue at once. If that
fails nothing is lost: the beat relay picks them up.

``ReadOnlyUnitOfWork`` is for use cases that only read: its statements run in autocommit mode (no
BEGIN/ROLLBACK round trips; under READ COMMITTED every statement takes its own snapshot anyway).
``StatementUnitOfWork`` is the same for a change that one statement makes whole.

``Reads`` is for the hot reads (``GET /orders/{id}``, ``GET /products/{id}``): Core rows straight
into read models on one pooled connection in autocommit mode, no Session and no identity map.

``run_in_transaction`` runs a whole unit of work again when Postgres reports contention: the one
place where transactions are retried.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from types import TracebackType
from typing import Any, TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.domain.actors import Actor
from app.domain.audit import AuditEntry, Changes
from app.domain.backoff import backoff_delay
from app.domain.errors import ServiceUnavailable
from app.domain.events import Event
from app.extensions import db
from app.log import current_request_id, get_logger
from app.repositories.accounts import AccountTokenRepository
from app.repositories.audit import AuditRepository
from app.repositories.carts import CartRepository
from app.repositories.catalogue import ProductReads, ProductRepository, StockLedgerRepository
from app.repositories.features import FeatureRepository
from app.repositories.fulfilment import ReturnRepository, ShipmentRepository
from app.repositories.notifications import NotificationRepository
from app.repositories.orders import IdempotencyRepository, OrderReads, OrderRepository
from app.repositories.outbox import OutboxRepository
from app.repositories.payments import PaymentRepository
from app.repositories.reconciliation import ReconciliationRepository
from app.repositories.stats import StatsRepository
from app.repositories.transactions import begin_read, end_read, set_local_lock_timeout
from app.repositories.users import UserRepository
from app.repositories.webhooks import WebhookRepository
from app.services.outbox import publish_committed

log = get_logger(__name__)

T = TypeVar("T")
SessionFactory = Callable[[], Session]


def default_engine() -> Engine:
    """The application's engine (Flask-SQLAlchemy's)."""
    return db.engine


def default_session() -> Session:
    """The application's session (Flask-SQLAlchemy's, scoped to the app context)."""
    return db.session()


@contextmanager
def autocommit_connection(engine_factory: Callable[[], Engine] = default_engine) -> Iterator[Connection]:
    """A pooled Core connection in autocommit mode, without a Session (under READ COMMITTED each
    statement takes its own snapshot anyway): for the per-request token check, which paid the
    Session's begin/rollback machinery around its one statement (a third of the check's CPU,
    docs/bench), and for ``Reads``. Back to the pool (isolation level reset) at the end."""
    with engine_factory().connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        yield connection


class _Repositories:
    """The repositories of one session, built on first use (most use cases need two or three)."""

    session: Session

    @cached_property
    def orders(self) -> OrderRepository:
        return OrderRepository(self.session)

    @cached_property
    def products(self) -> ProductRepository:
        return ProductRepository(self.session)

    @cached_property
    def stock_ledger(self) -> StockLedgerRepository:
        return StockLedgerRepository(self.session)

    @cached_property
    def carts(self) -> CartRepository:
        return CartRepository(self.session)

    @cached_property
    def shipments(self) -> ShipmentRepository:
        return ShipmentRepository(self.session)

    @cached_property
    def returns(self) -> ReturnRepository:
        return ReturnRepository(self.session)

    @cached_property
    def payments(self) -> PaymentRepository:
        return PaymentRepository(self.session)

    @cached_property
    def users(self) -> UserRepository:
        return UserRepository(self.session)

    @cached_property
    def account_tokens(self) -> AccountTokenRepository:
        return AccountTokenRepository(self.session)

    @cached_property
    def notifications(self) -> NotificationRepository:
        return NotificationRepository(self.session)

    @cached_property
    def features(self) -> FeatureRepository:
        return FeatureRepository(self.session)

    @cached_property
    def idempotency(self) -> IdempotencyRepository:
        return IdempotencyRepository(self.session)

    @cached_property
    def outbox(self) -> OutboxRepository:
        return OutboxRepository(self.session)

    @cached_property
    def reconciliations(self) -> ReconciliationRepository:
        return ReconciliationRepository(self.session)

    @cached_property
    def stats(self) -> StatsRepository:
        return StatsRepository(self.session)

    @cached_property
    def webhooks(self) -> WebhookRepository:
        return WebhookRepository(self.session)

    @cached_property
    def audit_log(self) -> AuditRepository:
        return AuditRepository(self.session)

    def detach(self, *entities: Any) -> None:
        """These entities outlive the unit of work: they keep what they loaded, without a session."""
        for entity in entities:
            self.session.expunge(entity)


class UnitOfWork(_Repositories):
    """A read-write transaction that rolls back unless the service commits."""

    def __init__(
        self,
        session_factory: SessionFactory = default_session,
        *,
        relay_after_commit: bool = True,
        lock_timeout_ms: int | None = None,
    ) -> None:
        self._session_factory = session_factory
        self.relay_after_commit = relay_after_commit
        self.lock_timeout_ms = lock_timeout_ms
        self._events: list[Event] = []
        self.committed = False
        self.outbox_ids: list[int] = []

    def __enter__(self) -> UnitOfWork:
        self.session = self._session_factory()
        end_read(self.session)  # a read-only unit of work before this one left autocommit mode
        if self.lock_timeout_ms is not None:
            set_local_lock_timeout(self.session, self.lock_timeout_ms)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.committed:
            self.rollback()

    def record(self, event: Event) -> None:
        """An event the service raises itself (one no aggregate records, e.g. a payment outcome)."""
        self._events.append(event)

    def audit(
        self,
        actor: Actor,
        action: str,
        resource_type: str,
        resource_id: object,
        changes: Changes | None = None,
    ) -> None:
        """Record an admin action in the audit log, in this transaction (it commits with the change
        or not at all). ``changes``: ``app.domain.audit.diff(before, after)`` of the API fields."""
        self.audit_log.add(
            AuditEntry(
                actor_id=actor.user_id,
                actor_role=actor.role,
                action=str(action),
                resource_type=str(resource_type),
                resource_id=str(resource_id),
                request_id=actor.request_id or current_request_id(),
                changes=changes or {},
            )
        )

    def _collect_events(self) -> list[Event]:
        events = list(self._events)
        self._events.clear()
        for aggregate in self._aggregates():
            events.extend(aggregate.events)
            aggregate.events.clear()
        return events

    def _aggregates(self) -> list[Any]:
        """Only the aggregates a repository handed out record events: orders, and products (low stock)."""
        seen: list[Any] = []
        if "orders" in self.__dict__:
            seen.extend(self.orders.seen)
        if "products" in self.__dict__:
            seen.extend(self.products.seen)
        return seen

    def commit(self) -> None:
        events = self._collect_events()
        request_id = current_request_id()
        relay = bool(events) and self.relay_after_commit
        # Relayed messages are marked published in this very transaction, before they are: a
        # separate transaction to mark them after the publish is a large share of a checkout's
        # cost (docs/bench). If the publish then fails they are marked unpublished again (the
        # beat relay's work); if the process dies in between, the beat relay publishes them again
        # once they are STALE_AFTER_SECONDS old and still unprocessed. Nothing is lost either way.
        self.outbox_ids = self.outbox.add_many(
            [(e.name, e.to_payload(), request_id) for e in events], published=relay
        )
        self.session.commit()
        self.committed = True
        if relay:
            try:
                publish_committed(self.outbox_ids, request_id, on_refused=self._mark_unpublished)
            except Exception as exc:  # the beat relay will deliver; never fail a committed request
                self.session.rollback()
                log.warning("relay_after_commit_failed", error=f"{type(exc).__name__}: {exc}")

    def _mark_unpublished(self, ids: list[int], error: str) -> None:
        try:
            self.outbox.mark_unpublished(ids, error)
            self.session.commit()
        except Exception:
            self.session.rollback()
            raise

    def rollback(self) -> None:
        self._events.clear()
        for aggregate in self._aggregates():
            aggregate.events.clear()
        self.session.rollback()


class ReadOnlyUnitOfWork(_Repositories):
    """Reads that write nothing, in autocommit mode: no transaction, so nothing to commit.

    The connection stays with the session until the request ends (or a read-write unit of work
    opens), so the entities read stay loaded for the response without another statement.
    """

    def __init__(self, session_factory: SessionFactory = default_session) -> None:
        self._session_factory = session_factory

    def __enter__(self) -> ReadOnlyUnitOfWork:
        self.session = self._session_factory()
        begin_read(self.session)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def close(self) -> None:
        """Give the connection back now (before slow work such as password hashing); entities
        read here are expired, so detach first what must stay loaded."""
        end_read(self.session)


class StatementUnitOfWork(_Repositories):
    """Changes that one statement each makes whole (an ``UPDATE … RETURNING``), in autocommit mode:
    each statement is a transaction of its own, so no BEGIN and COMMIT round trips around it.

    Only for a change that needs no second statement to be consistent and raises no event (nothing
    reaches the outbox here); anything else is a ``UnitOfWork``. Should the session already be in
    a transaction (a caller's reads), the statements join it and it commits at the end of the block.
    """

    def __init__(self, session_factory: SessionFactory = default_session) -> None:
        self._session_factory = session_factory

    def __enter__(self) -> StatementUnitOfWork:
        self.session = self._session_factory()
        self._joined = not begin_read(self.session)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._joined:
            if exc_type is None:
                self.session.commit()
            else:
                self.session.rollback()


class Reads:
    """Reads that write nothing, on a Core connection: rows become read models (``OrderView``,
    ``ProductView``) without a Session, an identity map or ORM loading, and the statements run in
    autocommit mode (no BEGIN/ROLLBACK round trips: under READ COMMITTED each statement takes its
    own snapshot anyway). The connection goes back to the pool when the block ends."""

    connection: Connection

    def __init__(self, engine_factory: Callable[[], Engine] = default_engine) -> None:
        self._engine_factory = engine_factory

    def __enter__(self) -> Reads:
        self._scope = autocommit_connection(self._engine_factory)
        self.connection = self._scope.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._scope.__exit__(exc_type, exc, tb)  # back to the pool, with its isolation level reset

    @cached_property
    def orders(self) -> OrderReads:
        return OrderReads(self.connection)

    @cached_property
    def products(self) -> ProductReads:
        return ProductReads(self.connection)


# ---- retries on contention ------------------------------------------------------------------------

# deadlock_detected, serialization_failure, lock_not_available (our lock_timeout)
CONTENTION_SQLSTATES = {"40P01": "deadlock", "40001": "serialization_failure", "55P03": "lock_timeout"}
DEFAULT_ATTEMPTS = 3
BASE_DELAY_SECONDS = 0.05


def contention_of(exc: BaseException) -> str | None:
    """The kind of contention an error reports, or None for any other error."""
    if isinstance(exc, DBAPIError):
        return CONTENTION_SQLSTATES.get(getattr(exc.orig, "sqlstate", None) or "")
    return None


def run_in_transaction(
    work: Callable[[UnitOfWork], T],
    *,
    uow_factory: Callable[[], UnitOfWork] = UnitOfWork,
    attempts: int = DEFAULT_ATTEMPTS,
    base_delay: float = BASE_DELAY_SECONDS,
) -> T:
    """Run ``work`` in a fresh unit of work, up to ``attempts`` times on contention.

    The unit of work rolls back each failed attempt; between attempts a short jittered sleep.
    After the last attempt the caller gets ``ServiceUnavailable`` (503 with Retry-After), never a
    500. ``work`` must commit its unit of work itself.
    """
    for attempt in range(1, attempts + 1):
        try:
            with uow_factory() as uow:
                return work(uow)
        except DBAPIError as exc:
            kind = contention_of(exc)
            if kind is None:
                raise
            log.info("transaction_contention", kind=kind, attempt=attempt)
            if attempt == attempts:
                raise ServiceUnavailable(
                    "The resources are busy; retry shortly", retry_after=1, reason=kind
                ) from exc
            time.sleep(backoff_delay(attempt + 1, base_delay))
    raise AssertionError("unreachable")
