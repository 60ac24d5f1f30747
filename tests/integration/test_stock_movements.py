"""The stock ledger under real Postgres: stock == sum(movements), and row locks under concurrency."""

from __future__ import annotations

import threading
import uuid
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from app.domain.actors import Actor
from app.domain.catalogue import Product, StockMovement
from app.domain.errors import InsufficientStock
from app.extensions import db
from app.services.catalogue import create_product, record_stock_movement


@pytest.fixture
def admin_actor(admin):
    return Actor(admin.id, "admin")


def ledger_of(product_id: uuid.UUID) -> tuple[int, list[StockMovement]]:
    rows = list(
        db.session.scalars(
            select(StockMovement)
            .where(StockMovement.product_id == product_id)
            .order_by(StockMovement.created_at)
        )
    )
    return sum(m.delta for m in rows), rows


def stock_of(product_id: uuid.UUID) -> int:
    return int(db.session.scalar(select(Product.stock).where(Product.id == product_id)))


def test_stock_equals_the_sum_of_movements_after_several_movements(app_ctx, admin_actor):
    product_id = create_product(admin_actor, "Kettle", "", Decimal("30.00"), 7).id
    for delta, reason in [
        (5, "RESTOCK"),
        (-3, "ADJUSTMENT"),
        (20, "RESTOCK"),
        (-29, "ADJUSTMENT"),
        (1, "RESTOCK"),
    ]:
        record_stock_movement(admin_actor, product_id, delta, reason, note="count")
    with pytest.raises(InsufficientStock):
        record_stock_movement(admin_actor, product_id, -2, "ADJUSTMENT")
    db.session.remove()
    total, rows = ledger_of(product_id)
    assert stock_of(product_id) == total == 1
    assert [m.stock_after for m in rows] == [7, 12, 9, 29, 0, 1]
    assert rows[0].note == "initial stock"
    assert all(m.actor_id == admin_actor.user_id for m in rows)


def test_concurrent_movements_never_drive_stock_negative(app, admin_actor):
    with app.app_context():
        product = create_product(admin_actor, "Scarce item", "", Decimal("1.00"), 10)
        product_id = product.id
    workers = 12
    start = threading.Barrier(workers)
    outcomes: list[str] = []
    lock = threading.Lock()

    def take_three() -> None:
        with app.app_context():
            start.wait()
            try:
                record_stock_movement(admin_actor, product_id, -3, "ADJUSTMENT")
                outcome = "ok"
            except InsufficientStock:
                outcome = "short"
            except Exception as exc:  # recorded, so the assertion shows it
                outcome = f"error: {type(exc).__name__}: {exc}"
            finally:
                db.session.remove()
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=take_three) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["ok"] * 3 + ["short"] * (workers - 3)
    with app.app_context():
        total, rows = ledger_of(product_id)
        assert stock_of(product_id) == total == 1
        # The row lock serialised them: each movement saw the stock the previous one left.
        assert sorted(m.stock_after for m in rows) == [1, 4, 7, 10]
        assert db.session.scalar(select(func.min(StockMovement.stock_after))) >= 0


def test_concurrent_restocks_and_removals_all_land_in_the_ledger(app, admin_actor):
    with app.app_context():
        product_id = create_product(admin_actor, "Busy item", "", Decimal("1.00"), 5).id
    deltas = [4, -2, 6, -1, 3, -5, 2, -3]
    start = threading.Barrier(len(deltas))
    errors: list[BaseException] = []

    def move(delta: int) -> None:
        with app.app_context():
            start.wait()
            try:
                record_stock_movement(
                    admin_actor, product_id, delta, "RESTOCK" if delta > 0 else "ADJUSTMENT"
                )
            except InsufficientStock:
                pass  # a removal that came first may find too little: refused, nothing written
            except BaseException as exc:
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=move, args=(d,)) for d in deltas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    with app.app_context():
        total, rows = ledger_of(product_id)
        assert stock_of(product_id) == total
        assert all(m.stock_after >= 0 for m in rows)
        # Taken under the row lock, in order: each movement starts from the stock the previous one left.
        previous = 0
        for movement in rows:  # ordered by created_at, stamped while holding the lock
            assert movement.stock_after - movement.delta == previous
            previous = movement.stock_after
