"""Stock reconciliation: stale unpaid orders expire, stock drift is found set-based and corrected safely."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import psycopg
import pytest
from sqlalchemy import event, func, select, text

from app.adapters import queue
from app.domain import payments as pay
from app.domain.catalogue import Product, StockMovement
from app.domain.operations import R_COMPLETED, R_FAILED, RUNNING, Reconciliation
from app.domain.orders import CANCELLED, PAYMENT_TIMEOUT, PLACED, Order, OrderStatusChange
from app.domain.outbox import OutboxMessage
from app.extensions import db
from app.services.reconciliation import ADVISORY_LOCK_KEY, BUSY, run_reconciliation
from tests.shop import make_product, place_order_directly
from tests.tasks import run_task

TIMEOUT = 900


@pytest.fixture(autouse=True)
def _queue_breaker_closed():
    queue.publish_breaker.close()
    yield
    queue.publish_breaker.close()


def reconcile(**kwargs: Any) -> Reconciliation | None:
    return run_reconciliation(payment_timeout_seconds=TIMEOUT, **kwargs)


def stock_of(product_id: uuid.UUID) -> int:
    db.session.expire_all()
    return int(db.session.scalar(select(Product.stock).where(Product.id == product_id)))


def ledger_of(product_id: uuid.UUID) -> int:
    return int(
        db.session.scalar(
            select(func.coalesce(func.sum(StockMovement.delta), 0)).where(
                StockMovement.product_id == product_id
            )
        )
    )


def inject_drift(product_id: uuid.UUID, stock: int) -> None:
    """A bug (or a hand-written UPDATE) changed stock without a ledger row."""
    db.session.execute(text("UPDATE products SET stock = :s WHERE id = :id"), {"s": stock, "id": product_id})
    db.session.commit()


def age_payment(order_id: uuid.UUID, seconds: int) -> None:
    db.session.execute(
        text("UPDATE payments SET created_at = now() - make_interval(secs => :s) WHERE order_id = :id"),
        {"s": seconds, "id": order_id},
    )
    db.session.commit()


def order_and_payment(order_id: uuid.UUID) -> tuple[Order, pay.Payment]:
    db.session.expire_all()
    order = db.session.get(Order, order_id)
    payment = db.session.scalars(select(pay.Payment).where(pay.Payment.order_id == order_id)).one()
    assert order is not None
    return order, payment


# ---- drift -------------------------------------------------------------------------------------------


def test_drift_injected_by_sql_is_reported_and_corrected_to_the_ledger(app_ctx):
    products = sorted((make_product(db.session, stock=10) for _ in range(3)), key=lambda p: p.id)
    a, b, untouched = (p.id for p in products)
    inject_drift(a, 15)
    inject_drift(b, 0)

    run = reconcile()

    assert run is not None and run.status == R_COMPLETED
    assert (run.products_checked, run.orders_expired) == (3, 0)
    assert run.discrepancies == [
        {"productId": str(a), "stockBefore": 15, "stockAfter": 10},
        {"productId": str(b), "stockBefore": 0, "stockAfter": 10},
    ]
    assert run.finished_at is not None and run.finished_at >= run.started_at
    assert [stock_of(p) for p in (a, b, untouched)] == [10, 10, 10]
    assert reconcile().discrepancies == []  # nothing left to correct


def test_a_product_without_ledger_rows_is_corrected_to_zero(app_ctx):
    product = make_product(db.session, stock=0)
    inject_drift(product.id, 4)
    run = reconcile()
    assert run.discrepancies == [{"productId": str(product.id), "stockBefore": 4, "stockAfter": 0}]
    assert stock_of(product.id) == 0


def test_correction_waits_for_a_checkout_in_progress_and_counts_its_ledger_row(app_ctx, database_url):
    """Candidates are found set-based, then locked, then recomputed under the locks.

    A checkout holds the product's row lock and has written its ledger row when the run starts;
    an UPDATE from an aggregate taken before the lock was granted would miss that row.
    """
    product = make_product(db.session, stock=10)
    inject_drift(product.id, 13)
    with psycopg.connect(database_url) as checkout:
        checkout.execute("SELECT stock FROM products WHERE id = %s FOR UPDATE", (product.id,))
        checkout.execute("UPDATE products SET stock = stock - 2 WHERE id = %s", (product.id,))
        checkout.execute(
            "INSERT INTO stock_movements (id, product_id, delta, reason, stock_after, created_at) "
            "VALUES (%s, %s, -2, 'ORDER_RESERVE', 11, now())",
            (uuid.uuid4(), product.id),
        )
        result: dict[str, Any] = {}
        app = app_ctx

        def run_in_background() -> None:
            with app.app_context():
                result["run"] = reconcile()

        worker = threading.Thread(target=run_in_background)
        worker.start()
        with psycopg.connect(database_url, autocommit=True) as observer:
            while not observer.execute(
                "SELECT 1 FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND datname = current_database()"
            ).fetchone():
                assert worker.is_alive()
        checkout.commit()
        worker.join()

    run = result["run"]
    assert run.discrepancies == [{"productId": str(product.id), "stockBefore": 11, "stockAfter": 8}]
    assert stock_of(product.id) == ledger_of(product.id) == 8


def test_reconciling_100000_products_issues_as_many_statements_as_10(app_ctx):
    def statements_to_reconcile(count: int) -> tuple[list[str], Reconciliation]:
        db.session.execute(text("TRUNCATE stock_movements, products CASCADE"))
        db.session.execute(
            text(
                "INSERT INTO products (id, name, description, price, stock, created_at, updated_at) "
                "SELECT gen_random_uuid(), 'P' || g, '', 1.00, 5, now(), now() FROM generate_series(1, :n) g"
            ),
            {"n": count},
        )
        db.session.execute(
            text(
                "INSERT INTO stock_movements (id, product_id, delta, reason, stock_after, created_at) "
                "SELECT gen_random_uuid(), id, 5, 'RESTOCK', 5, now() FROM products"
            )
        )
        db.session.execute(
            text("UPDATE products SET stock = 6 WHERE id = (SELECT id FROM products ORDER BY id LIMIT 1)")
        )
        db.session.commit()
        statements: list[str] = []

        def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(statement)

        event.listen(db.engine, "before_cursor_execute", record)
        try:
            run = reconcile()
        finally:
            event.remove(db.engine, "before_cursor_execute", record)
        assert run is not None
        return statements, run

    small, small_run = statements_to_reconcile(10)
    large, large_run = statements_to_reconcile(100_000)

    assert (small_run.products_checked, large_run.products_checked) == (10, 100_000)
    assert len(small_run.discrepancies) == len(large_run.discrepancies) == 1
    assert len(large) == len(small)


# ---- expiry of unpaid orders -------------------------------------------------------------------------


@pytest.fixture
def stale_order(app_ctx, customer) -> tuple[uuid.UUID, uuid.UUID]:
    product = make_product(db.session, stock=5)
    order = place_order_directly(db.session, customer.id, {product.id: 2})
    age_payment(order.id, TIMEOUT + 60)
    return order.id, product.id


def test_an_order_still_pending_after_the_timeout_is_cancelled_and_its_stock_returned(
    app_ctx, customer, stale_order
):
    order_id, product_id = stale_order
    fresh_product = make_product(db.session, stock=5)
    fresh = place_order_directly(db.session, customer.id, {fresh_product.id: 1})
    assert stock_of(product_id) == 3

    run = reconcile()

    assert run.orders_expired == 1
    order, payment = order_and_payment(order_id)
    assert (order.status, order.cancel_reason) == (CANCELLED, PAYMENT_TIMEOUT)
    assert (payment.status, payment.failure_reason) == (pay.FAILED, PAYMENT_TIMEOUT)
    assert stock_of(product_id) == ledger_of(product_id) == 5
    trail = db.session.scalars(select(OrderStatusChange).where(OrderStatusChange.order_id == order_id)).all()
    assert [(c.to_status, c.actor, c.reason) for c in trail][-1] == (CANCELLED, "system", PAYMENT_TIMEOUT)
    events = db.session.scalars(select(OutboxMessage.event_type)).all()
    assert "OrderCancelled" in events  # so the customer is notified
    assert order_and_payment(fresh.id)[0].status == PLACED
    assert run.discrepancies == []


def test_an_order_locked_by_someone_else_is_skipped_not_waited_for(app_ctx, stale_order, database_url):
    order_id, _ = stale_order
    with psycopg.connect(database_url) as busy:
        busy.execute("SELECT id FROM payments WHERE order_id = %s FOR UPDATE", (order_id,))
        run = reconcile()
        assert (run.status, run.orders_expired) == (R_COMPLETED, 0)
    assert order_and_payment(order_id)[0].status == PLACED
    assert reconcile().orders_expired == 1  # the next run takes it


def test_an_order_paid_meanwhile_is_not_expired(app_ctx, stale_order):
    order_id, _ = stale_order
    db.session.execute(
        text("UPDATE payments SET status = 'COMPLETED' WHERE order_id = :id"), {"id": order_id}
    )
    db.session.commit()
    assert reconcile().orders_expired == 0
    assert order_and_payment(order_id)[0].status == PLACED


# ---- one run at a time -----------------------------------------------------------------------------


def test_a_run_finding_another_in_progress_returns_at_once_without_a_record(app_ctx, database_url):
    with psycopg.connect(database_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        assert reconcile() is None
        assert db.session.scalar(select(func.count()).select_from(Reconciliation)) == 0
    _wait_until_no_session_holds_the_lock()
    assert reconcile().status == R_COMPLETED  # the lock went with the other session


def _wait_until_no_session_holds_the_lock() -> None:
    """A closed connection's backend exits (and drops its locks) a moment after the client returns."""
    deadline = time.monotonic() + 10
    while (
        db.session.scalar(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        )
        and time.monotonic() < deadline
    ):
        db.session.rollback()
        time.sleep(0.05)
    db.session.rollback()


def _advisory_lock_holders() -> list[tuple[str, str]]:
    """(state, lock mode) of every session holding the reconciliation's advisory lock."""
    rows = db.session.execute(
        text(
            "SELECT a.state, l.mode FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted "
            "AND ((l.classid::bigint << 32) | l.objid::bigint) = :key"
        ),
        {"key": ADVISORY_LOCK_KEY},
    ).all()
    db.session.rollback()
    return [(r[0], r[1]) for r in rows]


def test_two_concurrent_runs_exclude_each_other_with_a_transaction_scoped_lock(app, app_ctx):
    """The lock lives in an open transaction (safe behind PgBouncer in transaction pooling), not
    in the session: while one run is in progress another is refused, and nothing is left after."""
    make_product(db.session, stock=2)
    inside, release = threading.Event(), threading.Event()
    results: dict[str, Any] = {}

    def hold(phase: str, done: int, total: int) -> None:
        inside.set()
        assert release.wait(30)

    def first_run() -> None:
        with app.app_context():
            results["first"] = reconcile(progress=hold)

    thread = threading.Thread(target=first_run)
    thread.start()
    try:
        assert inside.wait(30)
        holders = _advisory_lock_holders()
        # One holder, idle *in transaction*: the lock is the transaction's (xact lock), and it is
        # held while the run works on other connections.
        assert holders == [("idle in transaction", "ExclusiveLock")]
        assert reconcile() is None  # the concurrent run is refused at once
    finally:
        release.set()
        thread.join(30)
    assert results["first"].status == R_COMPLETED
    assert _advisory_lock_holders() == []  # the transaction ended: the lock went with it
    assert reconcile().status == R_COMPLETED


def test_a_requested_run_finding_another_in_progress_is_recorded_failed(app_ctx, database_url):
    requested = Reconciliation(status=RUNNING, products_checked=0, orders_expired=0, discrepancies=[])
    db.session.add(requested)
    db.session.commit()
    with psycopg.connect(database_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        assert run_task(app_ctx, queue.RECONCILE_STOCK, str(requested.id)) == R_FAILED
    db.session.expire_all()
    failed = db.session.get(Reconciliation, requested.id)
    assert (failed.status, failed.error) == (R_FAILED, BUSY)
    assert failed.finished_at is not None


def test_the_task_completes_a_requested_run(app_ctx):
    requested = Reconciliation(status=RUNNING, products_checked=0, orders_expired=0, discrepancies=[])
    db.session.add(requested)
    db.session.commit()
    assert run_task(app_ctx, queue.RECONCILE_STOCK, str(requested.id)) == R_COMPLETED


def test_the_cli_runs_it_in_the_foreground(app, app_ctx):
    product = make_product(db.session, stock=2)
    inject_drift(product.id, 3)
    result = app.test_cli_runner().invoke(args=["reconcile-stock"])
    assert result.exit_code == 0, result.output
    assert "COMPLETED, 1 product(s) checked" in result.output
    assert f"{product.id}: stock 3 -> 2" in result.output
    assert stock_of(product.id) == 2


def test_the_cli_fails_when_another_run_holds_the_lock(app, app_ctx, database_url):
    with psycopg.connect(database_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        result = app.test_cli_runner().invoke(args=["reconcile-stock"])
    assert result.exit_code == 1
    assert "another reconciliation is running" in result.output
