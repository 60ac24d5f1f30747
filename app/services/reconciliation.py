"""Stock reconciliation: expire orders whose payment never came, then bring stock back to the ledger.

One run at a time, across every process: a run holds a transaction-scoped Postgres advisory lock
for its whole duration (safe behind PgBouncer in transaction pooling). A run that finds the lock
taken does not wait: a run requested by an admin (it has a RUNNING record) is recorded FAILED
with the error "another reconciliation was running"; a beat or CLI run without a record just
reports ``None``.

Step 1 cancels, one short transaction each, the PLACED orders whose payment is still PENDING
after ``PAYMENT_PENDING_TIMEOUT_SECONDS`` (``cancelReason: PAYMENT_TIMEOUT``, stock returned
through the ledger). Orders locked by someone else are skipped, so the run never blocks a
checkout or a charge. Step 2 compares every product's stock with the sum of its ledger in one
statement, then locks only the drifted products (id order) and corrects them from a fresh
statement taken under those locks, in the transaction that also completes the run record.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError

from app.adapters.queue import RECONCILE_STOCK, BrokerUnavailable, send_task
from app.domain.actors import SYSTEM, Actor
from app.domain.base import new_id, utcnow
from app.domain.errors import DomainError, NotFound, ServiceUnavailable
from app.domain.operations import R_COMPLETED, R_FAILED, RUNNING, Reconciliation
from app.domain.orders import PAYMENT_FAILED, PAYMENT_TIMEOUT
from app.log import get_logger
from app.repositories.reconciliation import advisory_lock
from app.services.cancellation import apply_cancellation
from app.services.unit_of_work import ReadOnlyUnitOfWork, UnitOfWork

log = get_logger(__name__)

ADVISORY_LOCK_KEY = 0x6F6D735F7265636F  # b"oms_reco": one key for every process
EXPIRE_BATCH = 1000  # stale orders cancelled per run at most; the next run takes the rest
ABANDONED_AFTER = timedelta(hours=1)
LONG_STATEMENT_SECONDS = 300
BUSY = "another reconciliation was running"

PHASE_EXPIRE = "Expiring unpaid orders"
PHASE_STOCK = "Checking stock against the ledger"
# progress(phase, done, total): how the CLI draws its progress bar.
Progress = Callable[[str, int, int], None]


def request_reconciliation(actor: Actor) -> Reconciliation:
    """Admin: record a RUNNING run and queue it; the worker fills in the record."""
    actor.require_staff()
    with UnitOfWork(relay_after_commit=False) as uow:
        run = _new_run(utcnow())
        run_id = run.id
        uow.reconciliations.add(run)
        uow.commit()
    try:
        send_task(RECONCILE_STOCK, [str(run_id)])
    except BrokerUnavailable:
        _finish_failed(run_id, "the task queue was unavailable")
        raise ServiceUnavailable("The task queue is unavailable; retry shortly")
    return get_reconciliation(actor, run_id)


def get_reconciliation(actor: Actor, reconciliation_id: uuid.UUID) -> Reconciliation:
    actor.require_staff()
    with ReadOnlyUnitOfWork() as uow:
        run = uow.reconciliations.get(reconciliation_id)
    if run is None:
        raise NotFound("The reconciliation was not found")
    return run


def run_reconciliation(
    *,
    payment_timeout_seconds: int,
    reconciliation_id: uuid.UUID | None = None,
    progress: Progress | None = None,
) -> Reconciliation | None:
    """One run (beat, admin request or CLI); returns its record, None if skipped (busy, unknown)."""
    with UnitOfWork() as uow:
        engine = uow.reconciliations.engine()
    with advisory_lock(engine, ADVISORY_LOCK_KEY) as acquired:
        if not acquired:
            log.info("reconciliation_skipped", reason=BUSY)
            if reconciliation_id is None:
                return None
            _finish_failed(reconciliation_id, BUSY)
            return _load(reconciliation_id)
        run_id = _start(reconciliation_id)
        if run_id is None:
            return None
        try:
            expired = _expire_stale_orders(payment_timeout_seconds, progress)
            _reconcile_stock(run_id, expired, progress)
        except Exception as exc:
            log.exception("reconciliation_failed", reconciliation_id=str(run_id))
            _finish_failed(run_id, f"{type(exc).__name__}: {exc}")
            raise
        return _load(run_id)


def _new_run(now: datetime) -> Reconciliation:
    return Reconciliation(
        id=new_id(), status=RUNNING, started_at=now, products_checked=0, orders_expired=0, discrepancies=[]
    )


def _start(reconciliation_id: uuid.UUID | None) -> uuid.UUID | None:
    """The RUNNING record of this run (created for beat/CLI runs); stale RUNNING ones are failed."""
    now = utcnow()
    with UnitOfWork(relay_after_commit=False) as uow:
        repo = uow.reconciliations
        if reconciliation_id is None:
            run = _new_run(now)
            repo.add(run)
        else:
            found = repo.get(reconciliation_id)
            if found is None or found.status != RUNNING:
                log.warning("reconciliation_not_runnable", reconciliation_id=str(reconciliation_id))
                return None
            run = found
            run.started_at = now
        run_id = run.id
        repo.fail_abandoned_runs(now - ABANDONED_AFTER, keep=run_id, now=now)
        uow.commit()
        return run_id


def _expire_stale_orders(timeout_seconds: int, progress: Progress | None) -> int:
    placed_before = utcnow() - timedelta(seconds=timeout_seconds)
    with UnitOfWork() as uow:
        order_ids = uow.reconciliations.stale_pending_orders(placed_before, EXPIRE_BATCH)
    expired = 0
    if progress:
        progress(PHASE_EXPIRE, 0, len(order_ids))
    for done, order_id in enumerate(order_ids, start=1):
        try:
            with UnitOfWork() as uow:
                if uow.reconciliations.lock_stale_pending_order(order_id, placed_before):
                    apply_cancellation(uow, order_id, SYSTEM, PAYMENT_TIMEOUT)
                    uow.commit()
                    expired += 1
                    log.info("order_expired", order_id=str(order_id), reason=PAYMENT_TIMEOUT)
        except (DomainError, SQLAlchemyError) as exc:  # e.g. cancelled meanwhile: the next run looks again
            log.warning("order_expiry_skipped", order_id=str(order_id), error=f"{type(exc).__name__}: {exc}")
        if progress:
            progress(PHASE_EXPIRE, done, len(order_ids))
    return expired + _expire_unpaid_windows()


def _expire_unpaid_windows() -> int:
    """Declined orders whose retry window passed unpaid: CANCELLED (PAYMENT_FAILED), stock back."""
    now = utcnow()
    with UnitOfWork() as uow:
        order_ids = uow.reconciliations.unpaid_after_window(now, EXPIRE_BATCH)
    expired = 0
    for order_id in order_ids:
        try:
            with UnitOfWork() as uow:
                if uow.reconciliations.lock_unpaid_after_window(order_id, now):
                    apply_cancellation(uow, order_id, SYSTEM, PAYMENT_FAILED)
                    uow.commit()
                    expired += 1
                    log.info("order_expired", order_id=str(order_id), reason=PAYMENT_FAILED)
        except (DomainError, SQLAlchemyError) as exc:
            log.warning("order_expiry_skipped", order_id=str(order_id), error=f"{type(exc).__name__}: {exc}")
    return expired


def _reconcile_stock(run_id: uuid.UUID, expired: int, progress: Progress | None) -> None:
    with UnitOfWork(relay_after_commit=False) as uow:
        repo = uow.reconciliations
        repo.allow_long_statements(LONG_STATEMENT_SECONDS)
        checked, drifted = repo.find_drift()
        if progress:
            progress(PHASE_STOCK, 0, checked)
        corrections = []
        if drifted:
            repo.lock_products(drifted)
            corrections = repo.correct_drift(drifted)
        for c in corrections:
            log.warning(
                "stock_drift_corrected",
                product_id=str(c.product_id),
                stock_before=c.stock_before,
                stock_after=c.stock_after,
            )
        run = repo.get(run_id)
        assert run is not None
        run.status = R_COMPLETED
        run.finished_at = utcnow()
        run.products_checked = checked
        run.orders_expired = expired
        run.discrepancies = [
            {"productId": str(c.product_id), "stockBefore": c.stock_before, "stockAfter": c.stock_after}
            for c in corrections
        ]
        uow.commit()
        if progress:
            progress(PHASE_STOCK, checked, checked)


def _finish_failed(run_id: uuid.UUID, error: str) -> None:
    with UnitOfWork(relay_after_commit=False) as uow:
        run = uow.reconciliations.get(run_id)
        if run is not None and run.status == RUNNING:
            run.status = R_FAILED
            run.finished_at = utcnow()
            run.error = error[:1000]
            uow.commit()


def _load(run_id: uuid.UUID) -> Reconciliation | None:
    with UnitOfWork() as uow:
        run = uow.reconciliations.get(run_id)
        if run is not None:
            uow.detach(run)  # read: it outlives this short transaction
        return run
