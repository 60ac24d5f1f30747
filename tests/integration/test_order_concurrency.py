"""Concurrency against real Postgres with real threads: no oversell, no deadlock, no lost update."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select

from app.domain.catalogue import Product, StockMovement
from app.domain.orders import Order
from app.domain.payments import Payment
from app.extensions import db
from tests.shop import make_product

# Below the pool size (5 + 5 overflow): a thread never waits for a connection.
THREADS = 8


def race(app, calls: list[Any]) -> list[Any]:
    """Run each call (given its own test client) in its own thread, all released at once."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        client = app.test_client()
        barrier.wait()
        return call(client)

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def add(client, user, auth, product_id, quantity):
    response = client.post(
        f"/cart/{user.id}/add", json={"productId": str(product_id), "quantity": quantity}, headers=auth
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()["cart"]["cartId"]


def checkout_call(user, auth, cart_id, key=None):
    headers = {**auth, **({"Idempotency-Key": key} if key else {})}
    body = {"userId": str(user.id), "cartId": cart_id}
    return lambda client: client.post("/orders", json=body, headers=headers)


def ledger_matches_stock(product_id) -> tuple[int, int]:
    db.session.expire_all()
    stock = db.session.get(Product, product_id).stock
    ledger = db.session.scalar(
        select(func.coalesce(func.sum(StockMovement.delta), 0)).where(StockMovement.product_id == product_id)
    )
    return stock, int(ledger)


@pytest.fixture
def buyers(app, app_ctx, client, make_user, token_for):
    def _make(count: int) -> list[tuple[Any, dict[str, str]]]:
        return [(user, token_for(user)) for user in (make_user() for _ in range(count))]

    return _make


def test_buyers_racing_for_the_last_units_never_oversell(app, client, buyers):
    product = make_product(db.session, price="5.00", stock=3).id
    people = buyers(THREADS)
    carts = [add(client, user, auth, product, 1) for user, auth in people]
    responses = race(app, [checkout_call(u, a, c) for (u, a), c in zip(people, carts, strict=True)])
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 3 + [409] * (THREADS - 3), [r.get_json() for r in responses]
    for response in responses:
        if response.status_code == 409:
            assert response.get_json()["errors"] == [
                {"productId": str(product), "requested": 1, "available": 0}
            ]
    assert ledger_matches_stock(product) == (0, 0)


def test_multi_line_buyers_racing_sell_exactly_the_stock(app, client, buyers):
    scarce = make_product(db.session, price="5.00", stock=5).id
    plenty = make_product(db.session, price="1.00", stock=100).id
    people = buyers(THREADS)
    carts = []
    for user, auth in people:
        add(client, user, auth, plenty, 3)
        carts.append(add(client, user, auth, scarce, 2))
    responses = race(app, [checkout_call(u, a, c) for (u, a), c in zip(people, carts, strict=True)])
    statuses = [r.status_code for r in responses]
    assert all(s in (201, 409) for s in statuses), statuses
    assert statuses.count(201) == 2  # 2 + 2 of 5; a third would need 2 of the last 1
    assert ledger_matches_stock(scarce) == (1, 1)
    assert ledger_matches_stock(plenty) == (100 - 3 * 2, 100 - 3 * 2)


def test_carts_holding_the_same_products_in_any_order_check_out_without_deadlock(app, client, buyers):
    products = [make_product(db.session, price="1.00", stock=100).id for _ in range(4)]
    people = buyers(THREADS)
    carts = []
    for index, (user, auth) in enumerate(people):
        ordering = products if index % 2 else list(reversed(products))
        for product in ordering:
            cart_id = add(client, user, auth, product, 1)
        carts.append(cart_id)
    responses = race(app, [checkout_call(u, a, c) for (u, a), c in zip(people, carts, strict=True)])
    assert [r.status_code for r in responses] == [201] * THREADS, [r.get_json() for r in responses]
    for product in products:
        assert ledger_matches_stock(product) == (100 - THREADS, 100 - THREADS)


def test_concurrent_adds_of_the_same_product_lose_no_update(app, app_ctx, client, customer, token_for):
    auth = token_for(customer)
    product = make_product(db.session, price="1.00", stock=1000).id
    add(client, customer, auth, product, 1)  # the cart exists
    body = {"productId": str(product), "quantity": 3}
    responses = race(
        app, [lambda c: c.post(f"/cart/{customer.id}/add", json=body, headers=auth) for _ in range(THREADS)]
    )
    assert [r.status_code for r in responses] == [201] * THREADS
    cart = app.test_client().get(f"/cart/{customer.id}", headers=auth).get_json()
    assert cart["cartItems"][0]["quantity"] == 1 + 3 * THREADS


def test_concurrent_adds_beyond_stock_never_exceed_it(app, app_ctx, client, customer, token_for):
    auth = token_for(customer)
    product = make_product(db.session, price="1.00", stock=10).id
    body = {"productId": str(product), "quantity": 3}
    responses = race(
        app, [lambda c: c.post(f"/cart/{customer.id}/add", json=body, headers=auth) for _ in range(THREADS)]
    )
    assert sorted(r.status_code for r in responses) == [201] * 3 + [409] * (THREADS - 3)
    cart = app.test_client().get(f"/cart/{customer.id}", headers=auth).get_json()
    assert cart["cartItems"][0]["quantity"] == 9


def test_concurrent_repeats_with_one_idempotency_key_create_exactly_one_order(
    app, app_ctx, client, customer, token_for
):
    auth = token_for(customer)
    product = make_product(db.session, price="1.00", stock=100).id
    cart_id = add(client, customer, auth, product, 2)
    responses = race(app, [checkout_call(customer, auth, cart_id, key="same-key") for _ in range(THREADS)])
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {201, 409}, statuses
    created = [r for r in responses if r.status_code == 201]
    assert created
    assert len({r.get_json()["orderId"] for r in created}) == 1
    assert sum(1 for r in created if "Idempotent-Replayed" not in r.headers) == 1
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(Order).where(Order.user_id == customer.id)) == 1
    assert ledger_matches_stock(product) == (98, 98)


def test_concurrent_cancellations_with_the_same_version_have_exactly_one_winner(
    app, app_ctx, client, customer, token_for
):
    auth = token_for(customer)
    product = make_product(db.session, price="1.00", stock=10).id
    cart_id = add(client, customer, auth, product, 2)
    order_id = client.post(
        "/orders", json={"userId": str(customer.id), "cartId": cart_id}, headers=auth
    ).get_json()["orderId"]
    body = {"status": "CANCELLED", "version": 1}
    responses = race(
        app, [lambda c: c.put(f"/orders/{order_id}", json=body, headers=auth) for _ in range(THREADS)]
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * (THREADS - 1), statuses
    assert ledger_matches_stock(product) == (10, 10)  # returned once, not eight times


def test_concurrent_shipments_with_the_same_if_match_have_exactly_one_winner(
    app, app_ctx, client, customer, admin, token_for
):
    auth, as_admin = token_for(customer), token_for(admin)
    product = make_product(db.session, price="1.00", stock=10).id
    cart_id = add(client, customer, auth, product, 1)
    order = client.post(
        "/orders", json={"userId": str(customer.id), "cartId": cart_id}, headers=auth
    ).get_json()
    db.session.get(Payment, uuid.UUID(order["payment"]["paymentId"])).status = "COMPLETED"
    db.session.commit()
    headers = {**as_admin, "If-Match": '"1"'}
    url = f"/orders/{order['orderId']}"
    responses = race(
        app, [lambda c: c.put(url, json={"status": "SHIPPED"}, headers=headers) for _ in range(THREADS)]
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [412] * (THREADS - 1), statuses
    history = app.test_client().get(f"{url}/history", headers=as_admin).get_json()["items"]
    assert [h["toStatus"] for h in history] == ["PLACED", "SHIPPED"]


def test_a_cancellation_racing_a_shipment_leaves_one_consistent_outcome(
    app, app_ctx, client, customer, admin, token_for
):
    auth, as_admin = token_for(customer), token_for(admin)
    product = make_product(db.session, price="1.00", stock=10).id
    cart_id = add(client, customer, auth, product, 4)
    order = client.post(
        "/orders", json={"userId": str(customer.id), "cartId": cart_id}, headers=auth
    ).get_json()
    db.session.get(Payment, uuid.UUID(order["payment"]["paymentId"])).status = "COMPLETED"
    db.session.commit()
    url = f"/orders/{order['orderId']}"
    calls = [
        (lambda c: c.put(url, json={"status": "SHIPPED", "version": 1}, headers=as_admin))
        if i % 2
        else (lambda c: c.put(url, json={"status": "CANCELLED", "version": 1}, headers=auth))
        for i in range(THREADS)
    ]
    responses = race(app, calls)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * (THREADS - 1), statuses
    final = app.test_client().get(url, headers=as_admin).get_json()
    expected_stock = 10 if final["status"] == "CANCELLED" else 6
    assert ledger_matches_stock(product) == (expected_stock, expected_stock)
