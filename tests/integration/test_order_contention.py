"""Contention is retried, then answered 503 with Retry-After; stale writes never overwrite."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import make_url, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm.exc import StaleDataError

from app.domain.errors import ServiceUnavailable
from app.domain.orders import SHIPPED, Order
from app.extensions import db
from app.services import orders as orders_service
from app.services.unit_of_work import run_in_transaction
from tests.api.test_conventions import assert_problem
from tests.shop import make_product, place_order_directly


class FakeDriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def contention(sqlstate: str) -> OperationalError:
    return OperationalError("SELECT …", {}, FakeDriverError(sqlstate))


@pytest.mark.parametrize("sqlstate", ["40P01", "40001", "55P03"])
def test_a_transaction_is_run_again_after_deadlock_serialization_failure_or_lock_timeout(app_ctx, sqlstate):
    attempts = []

    def transaction(uow):
        attempts.append(1)
        if len(attempts) < 3:
            raise contention(sqlstate)
        return "done"

    assert run_in_transaction(transaction, base_delay=0) == "done"
    assert len(attempts) == 3


def test_after_the_last_attempt_contention_is_service_unavailable(app_ctx):
    def transaction(uow):
        raise contention("40P01")

    with pytest.raises(ServiceUnavailable) as caught:
        run_in_transaction(transaction, attempts=2, base_delay=0)
    assert caught.value.retry_after >= 1


def test_other_database_errors_are_not_retried(app_ctx):
    attempts = []

    def transaction(uow):
        attempts.append(1)
        raise contention("23505")

    with pytest.raises(OperationalError):
        run_in_transaction(transaction, base_delay=0)
    assert len(attempts) == 1


@pytest.fixture
def other_connection(database_url):
    """Another session, to hold ``SELECT … FOR UPDATE`` on a product."""
    conn = psycopg.connect(make_url(database_url).render_as_string(hide_password=False))
    yield conn
    conn.rollback()
    conn.close()


def test_a_checkout_blocked_on_a_locked_product_answers_503_and_frees_its_key(
    app_ctx, client, customer, token_for, other_connection, monkeypatch
):
    monkeypatch.setattr(orders_service, "CHECKOUT_LOCK_TIMEOUT_MS", 50)
    auth = {**token_for(customer), "Idempotency-Key": "blocked"}
    product = make_product(db.session, stock=5).id
    cart = client.post(
        f"/cart/{customer.id}/add", json={"productId": str(product), "quantity": 1}, headers=auth
    )
    body = {"userId": str(customer.id), "cartId": cart.get_json()["cart"]["cartId"]}
    other_connection.execute("SELECT 1 FROM products WHERE id = %s FOR UPDATE", (product,))

    response = client.post("/orders", json=body, headers=auth)

    assert_problem(response, 503)
    assert response.headers["Retry-After"]
    assert db.session.scalars(select(Order)).all() == []
    other_connection.rollback()  # the lock is gone: the same key is free for the retry
    retried = client.post("/orders", json=body, headers=auth)
    assert retried.status_code == 201
    assert "Idempotent-Replayed" not in retried.headers


def test_an_orm_write_from_a_stale_read_is_refused(app_ctx, customer, database_url):
    product = make_product(db.session, stock=5)
    order = place_order_directly(db.session, customer.id, {product.id: 1})
    order = db.session.get(Order, order.id)
    assert order.version == 1
    with psycopg.connect(make_url(database_url).render_as_string(hide_password=False)) as other:
        other.execute("UPDATE orders SET version = 2 WHERE id = %s", (order.id,))
    order.status = SHIPPED
    order.version = 2
    with pytest.raises(StaleDataError):
        db.session.flush()
    db.session.rollback()
