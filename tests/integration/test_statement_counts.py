"""No per-line queries: checkout, an order and a cart cost the same statements for 1 line or 50."""

from __future__ import annotations

import uuid
from contextlib import contextmanager

import pytest
from sqlalchemy import event

from app.extensions import db
from app.repositories.carts import CartRepository
from app.services.features import feature_cache
from tests.shop import make_product


@contextmanager
def counted(app):
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    engine = db.engines[None] if hasattr(db, "engines") else db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


@pytest.fixture
def shopper(app, app_ctx, make_user, token_for):
    """Make a customer whose cart holds ``lines`` different products."""

    def _make(lines):
        user = make_user()
        products = [make_product(db.session, price="1.10", stock=5) for _ in range(lines)]
        repo = CartRepository(db.session)
        repo.ensure(user.id)
        cart_id = repo.lock_shared(user.id)
        for product in products:
            repo.add_quantity(cart_id, product.id, 2, 1000)
        db.session.commit()
        return user, token_for(user), cart_id

    return _make


def measure(app, request):
    feature_cache.invalidate()  # both runs read the toggles
    with counted(app) as statements:
        response = request()
    assert response.status_code < 300, response.get_json()
    return response, statements


def test_checkout_issues_the_same_statements_for_1_and_50_lines(app, client, shopper):
    counts = []
    for lines in (1, 50):
        user, auth, cart_id = shopper(lines)
        _, statements = measure(
            app,
            lambda user=user, auth=auth, cart_id=cart_id: client.post(
                "/orders", json={"userId": str(user.id), "cartId": str(cart_id)}, headers=auth
            ),
        )
        counts.append(len(statements))
    assert counts[0] == counts[1], counts


def test_reading_an_order_issues_the_same_statements_for_1_and_50_lines(app, client, shopper):
    counts = []
    for lines in (1, 50):
        user, auth, cart_id = shopper(lines)
        order = client.post("/orders", json={"userId": str(user.id), "cartId": str(cart_id)}, headers=auth)
        url = order.headers["Location"]
        response, statements = measure(app, lambda url=url, auth=auth: client.get(url, headers=auth))
        assert len(response.get_json()["orderItems"]) == lines
        counts.append(len(statements))
    assert counts[0] == counts[1], counts


def test_listing_orders_issues_the_same_statements_for_1_and_50_lines(app, client, shopper):
    counts = []
    for lines in (1, 50):
        user, auth, cart_id = shopper(lines)
        client.post("/orders", json={"userId": str(user.id), "cartId": str(cart_id)}, headers=auth)
        _, statements = measure(app, lambda auth=auth: client.get("/orders", headers=auth))
        counts.append(len(statements))
    assert counts[0] == counts[1], counts


def test_reading_a_cart_issues_the_same_statements_for_1_and_50_lines(app, client, shopper):
    counts = []
    for lines in (1, 50):
        user, auth, _ = shopper(lines)
        response, statements = measure(
            app, lambda user=user, auth=auth: client.get(f"/cart/{user.id}", headers=auth)
        )
        assert len(response.get_json()["cartItems"]) == lines
        counts.append(len(statements))
    assert counts[0] == counts[1], counts


def test_reading_an_order_issues_the_same_statements_for_1_and_5_shipments_and_returns(
    app, client, shopper, make_user, token_for
):
    from app.domain.payments import Payment

    admin = token_for(make_user("admin"))
    counts = []
    for shipments in (1, 5):
        user, auth, cart_id = shopper(1)  # one line of 2 units … raised to 5 below
        product_id = client.get(f"/cart/{user.id}", headers=auth).get_json()["cartItems"][0]["productId"]
        client.put(f"/cart/{user.id}/items/{product_id}", json={"quantity": 5}, headers=auth)
        order = client.post("/orders", json={"userId": str(user.id), "cartId": str(cart_id)}, headers=auth)
        order_id = order.get_json()["orderId"]
        payment = db.session.get(Payment, uuid.UUID(order.get_json()["payment"]["paymentId"]))
        payment.status, payment.gateway_reference = "COMPLETED", "pi_counted"
        db.session.commit()
        sizes = [5] if shipments == 1 else [1] * 5
        for size in sizes:
            shipment = client.post(
                f"/orders/{order_id}/shipments",
                json={
                    "items": [{"productId": product_id, "quantity": size}],
                    "carrier": "UPS",
                    "trackingNumber": "1",
                },
                headers=admin,
            ).get_json()
            client.put(
                f"/orders/{order_id}/shipments/{shipment['shipmentId']}",
                json={"status": "DELIVERED"},
                headers=admin,
            )
        for _ in range(shipments):
            returned = client.post(
                f"/orders/{order_id}/returns",
                json={"items": [{"productId": product_id, "quantity": 1}], "reason": "OTHER"},
                headers=auth,
            )
            assert returned.status_code == 201, returned.get_json()
        url = f"/orders/{order_id}"
        response, statements = measure(app, lambda url=url, auth=auth: client.get(url, headers=auth))
        assert response.get_json()["fulfillmentStatus"] == "DELIVERED"
        counts.append(len(statements))
    assert counts[0] == counts[1], counts
