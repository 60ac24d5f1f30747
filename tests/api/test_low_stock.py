"""SPEC §5.5: lowStockThreshold on products, ProductLowStock once per crossing, GET /admin/low-stock."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.domain.outbox import OutboxMessage
from app.extensions import db
from tests.api.test_conventions import assert_problem


@pytest.fixture(autouse=True)
def _context(app_ctx):
    return app_ctx


@pytest.fixture
def as_admin(admin, token_for):
    return token_for(admin)


def create(client, headers, name, stock, **extra):
    body = {"productName": name, "description": "", "price": 1.5, "stock": stock, **extra}
    response = client.post("/products", json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def move(client, headers, product, delta):
    reason = "RESTOCK" if delta > 0 else "ADJUSTMENT"
    response = client.post(
        f"/products/{product['productId']}/stock-movements",
        json={"delta": delta, "reason": reason},
        headers=headers,
    )
    assert response.status_code == 201, response.get_json()


def low_stock_events():
    db.session.expire_all()
    rows = db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.event_type == "ProductLowStock").order_by(OutboxMessage.id)
    )
    return [m.payload for m in rows]


def test_a_new_product_gets_the_default_threshold_or_the_one_given(client, as_admin):
    assert create(client, as_admin, "Default", 10)["lowStockThreshold"] == 5
    assert create(client, as_admin, "Custom", 10, lowStockThreshold=2)["lowStockThreshold"] == 2


def test_an_admin_changes_the_threshold(client, as_admin):
    product = create(client, as_admin, "Lamp", 10)
    response = client.patch(
        f"/products/{product['productId']}", json={"lowStockThreshold": 0}, headers=as_admin
    )
    assert response.status_code == 200 and response.get_json()["lowStockThreshold"] == 0


@pytest.mark.parametrize("value", [-1, 1.5, "3", None, 1_000_001])
def test_a_bad_threshold_is_422(client, as_admin, value):
    body = {"productName": "X", "description": "", "price": 1, "stock": 1, "lowStockThreshold": value}
    assert_problem(client.post("/products", json=body, headers=as_admin), 422)


def test_one_event_per_crossing_not_one_per_change_below(client, as_admin):
    product = create(client, as_admin, "Lamp", 8, lowStockThreshold=5)
    move(client, as_admin, product, -2)  # 6: above
    assert low_stock_events() == []
    move(client, as_admin, product, -1)  # 5: crossing
    move(client, as_admin, product, -2)  # 3: still low
    assert low_stock_events() == [
        {"product_id": product["productId"], "product_name": "Lamp", "stock": 5, "low_stock_threshold": 5}
    ]
    move(client, as_admin, product, 10)  # 13: above again
    move(client, as_admin, product, -12)  # 1: a second crossing
    assert [e["stock"] for e in low_stock_events()] == [5, 1]


def test_a_product_created_at_or_below_its_threshold_alerts_once_it_crosses_not_before(client, as_admin):
    create(client, as_admin, "Born low", 2)
    assert low_stock_events() == []  # created low: no crossing from above


def test_a_checkout_that_crosses_the_threshold_raises_the_event(client, as_admin, customer, token_for):
    product = create(client, as_admin, "Mug", 7, lowStockThreshold=5)
    auth = token_for(customer)
    client.post(
        f"/cart/{customer.id}/add", json={"productId": product["productId"], "quantity": 3}, headers=auth
    )
    cart_id = client.get(f"/cart/{customer.id}", headers=auth).get_json()["cartId"]
    assert (
        client.post("/orders", json={"userId": str(customer.id), "cartId": cart_id}, headers=auth).status_code
        == 201
    )
    assert [e["stock"] for e in low_stock_events()] == [4]


def test_the_low_stock_list_is_lowest_stock_first_and_paginated(client, as_admin):
    create(client, as_admin, "Plenty", 50)
    create(client, as_admin, "Three", 3)
    create(client, as_admin, "Zero", 0)
    create(client, as_admin, "Off", 0, lowStockThreshold=0)
    create(client, as_admin, "Five", 5)
    body = client.get("/admin/low-stock?pageSize=2", headers=as_admin).get_json()
    assert [p["productName"] for p in body["items"]] == ["Zero", "Three"]
    assert (body["totalItems"], body["totalPages"]) == (3, 2)
    second = client.get("/admin/low-stock?page=2&pageSize=2", headers=as_admin).get_json()
    assert [p["productName"] for p in second["items"]] == ["Five"]


def test_the_low_stock_list_is_for_admins(client, customer, token_for):
    assert_problem(client.get("/admin/low-stock"), 401)
    assert_problem(client.get("/admin/low-stock", headers=token_for(customer)), 403)
