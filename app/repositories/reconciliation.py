"""Queries of the stock reconciliation: stale orders, ledger drift (set-based) and run records.

Drift is found and corrected in a constant number of statements, however many products there
are: no per-product round trips.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, Engine, bindparam, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Session

from app.domain.operations import R_FAILED, RUNNING, Reconciliation
from app.domain.orders import PLACED, Order
from app.domain.payments import FAILED, PENDING, PROCESSING, REQUIRES_ACTION, Payment

_IDS = bindparam("ids", type_=ARRAY(UUID(as_uuid=True)))


@dataclass(frozen=True)
class StockCorrection:
    product_id: uuid.UUID
    stock_before: int
    stock_after: int


@contextmanager
def advisory_lock(engine: Engine, key: int) -> Iterator[bool]:
    """``pg_try_advisory_xact_lock`` in a transaction of its own, open for the block; yields whether
    we got it.

    Transaction-scoped, so it is safe behind PgBouncer in transaction pooling: the server connection
    stays with this client while the transaction is open, and the lock can neither outlive it on a
    pooled connection nor be released on a different one (a session-level lock could be both). The
    transaction only holds the lock: it writes nothing (no transaction id) and, READ COMMITTED,
    keeps no snapshot between statements, so it holds back no vacuum. Ending the block — or the
    process dying and its connection closing — rolls it back, which releases the lock.
    """
    with engine.connect() as connection:
        # The run's work happens on other connections; this one waits, idle in its transaction, for
        # as long as the run takes (statements up to minutes): exempt it from the idle timeout.
        connection.execute(text("SET LOCAL idle_in_transaction_session_timeout = 0"))
        acquired = bool(connection.scalar(select(func.pg_try_advisory_xact_lock(key))))
        try:
            yield acquired
        finally:
            connection.rollback()


class ReconciliationRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def engine(self) -> Engine:
        """The engine, for ``advisory_lock`` (held on a connection of its own for a whole run)."""
        engine = self.session.get_bind()
        assert isinstance(engine, Engine)
        return engine

    # ---- run records -----------------------------------------------------------------------------

    def add(self, run: Reconciliation) -> None:
        self.session.add(run)

    def get(self, reconciliation_id: uuid.UUID) -> Reconciliation | None:
        return self.session.get(Reconciliation, reconciliation_id)

    def fail_abandoned_runs(self, started_before: datetime, keep: uuid.UUID, now: datetime) -> None:
        """RUNNING records left by a worker that died mid-run (called while holding the lock)."""
        self.session.execute(
            update(Reconciliation)
            .where(
                Reconciliation.status == RUNNING,
                Reconciliation.started_at < started_before,
                Reconciliation.id != keep,
            )
            .values(status=R_FAILED, finished_at=now, error="abandoned: the run never finished")
        )

    def allow_long_statements(self, seconds: int) -> None:
        """This transaction only: a catalogue-wide aggregate may outlast the request timeout."""
        self.session.execute(text(f"SET LOCAL statement_timeout = '{int(seconds)}s'"))

    # ---- step 1: orders whose payment stayed PENDING too long ------------------------------------

    def stale_pending_orders(self, placed_before: datetime, limit: int) -> list[uuid.UUID]:
        stmt = (
            select(Order.id)
            .join(Payment, Payment.order_id == Order.id)
            .where(Order.status == PLACED, *_stale_pending(placed_before))
            .order_by(Payment.created_at)
            .limit(limit)
        )
        return list(self.session.scalars(stmt))

    def unpaid_after_window(self, now: datetime, limit: int) -> list[uuid.UUID]:
        """PLACED orders whose payment was declined and whose retry window has passed."""
        stmt = (
            select(Order.id)
            .join(Payment, Payment.order_id == Order.id)
            .where(Order.status == PLACED, *_window_passed(now))
            .order_by(Order.payment_due_by)
            .limit(limit)
        )
        return list(self.session.scalars(stmt))

    def lock_unpaid_after_window(self, order_id: uuid.UUID, now: datetime) -> bool:
        """Lock such an order if it still is one (``SKIP LOCKED``, like the stale PENDING ones)."""
        stmt = (
            select(Order.id)
            .join(Payment, Payment.order_id == Order.id)
            .where(Order.id == order_id, Order.status == PLACED, *_window_passed(now))
            .with_for_update(skip_locked=True)
        )
        return self.session.scalar(stmt) is not None

    def lock_stale_pending_order(self, order_id: uuid.UUID, placed_before: datetime) -> bool:
        """Lock the order and its payment if still stale; False if gone or busy (``SKIP LOCKED``).

        Skipping a locked order means the run never waits on a checkout, a charge or a
        cancellation in progress; the next run looks again.
        """
        stmt = (
            select(Order.id)
            .join(Payment, Payment.order_id == Order.id)
            .where(
                Order.id == order_id,
                Order.status == PLACED,
                *_stale_pending(placed_before),
            )
            .with_for_update(skip_locked=True)
        )
        return self.session.scalar(stmt) is not None

    # ---- step 2: stock against the ledger ---------------------------------------------------------

    def find_drift(self) -> tuple[int, list[uuid.UUID]]:
        """One statement: how many products there are, and which have ``stock != sum(ledger)``."""
        row = self.session.execute(
            text(
                """
                SELECT count(*) AS checked,
                       coalesce(array_agg(p.id ORDER BY p.id)
                                FILTER (WHERE p.stock <> coalesce(l.total, 0)), '{}') AS drifted
                FROM products p
                LEFT JOIN (SELECT product_id, sum(delta) AS total
                           FROM stock_movements GROUP BY product_id) l ON l.product_id = p.id
                """
            )
        ).one()
        return int(row.checked), list(row.drifted)

    def lock_products(self, product_ids: Sequence[uuid.UUID]) -> None:
        """``FOR UPDATE`` in id order (as checkout does), in one statement."""
        self.session.execute(
            text("SELECT id FROM products WHERE id = ANY(:ids) ORDER BY id FOR UPDATE").bindparams(_IDS),
            {"ids": list(product_ids)},
        )

    def correct_drift(self, product_ids: Sequence[uuid.UUID]) -> list[StockCorrection]:
        """Set each product's stock to its ledger balance; returns what changed.

        Run after ``lock_products`` in the same transaction: this statement's snapshot is taken
        after the locks are held, so no stock change can commit between what it reads and what
        it writes (every stock change locks its product first).
        """
        rows = self.session.execute(
            text(
                """
                WITH ledger AS (
                    SELECT product_id, sum(delta) AS total
                    FROM stock_movements WHERE product_id = ANY(:ids) GROUP BY product_id
                ), target AS (
                    SELECT p.id, p.stock AS stock_before, greatest(coalesce(l.total, 0), 0) AS stock_after
                    FROM products p LEFT JOIN ledger l ON l.product_id = p.id
                    WHERE p.id = ANY(:ids)
                )
                UPDATE products AS p SET stock = t.stock_after, updated_at = now()
                FROM target t
                WHERE p.id = t.id AND p.stock <> t.stock_after
                RETURNING p.id, t.stock_before, p.stock AS stock_after
                """
            ).bindparams(_IDS),
            {"ids": list(product_ids)},
        ).all()
        return sorted(
            (StockCorrection(r.id, int(r.stock_before), int(r.stock_after)) for r in rows),
            key=lambda c: c.product_id,
        )


def _stale_pending(placed_before: datetime) -> list[Any]:
    """A PENDING payment older than the timeout — unless a retry within its window is running."""
    return [
        Payment.status.in_((PENDING, REQUIRES_ACTION, PROCESSING)),
        Payment.created_at < placed_before,
        or_(Order.payment_due_by.is_(None), Order.payment_due_by < func.now()),
    ]


def _window_passed(now: datetime) -> list[Any]:
    return [
        Payment.status.in_((FAILED, REQUIRES_ACTION)),
        Order.payment_due_by.is_not(None),
        Order.payment_due_by < now,
    ]
