"""SPEC §4 Products: the public catalogue and the admin writes (create, edit, stock movements)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from app.api.errors import PROBLEM_JSON
from app.domain.catalogue import StockMovement
from app.extensions import db


def problem(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM_JSON
    body = response.get_json(force=True)
    assert body["status"] == status
    return body


def new_product(**overrides):
    body = {"productName": "Espresso cup", "description": "Porcelain, 80 ml", "price": 8.5, "stock": 10}
    body.update(overrides)
    return body


@pytest.fixture
def as_admin(admin, token_for):
    return token_for(admin)


@pytest.fixture
def as_customer(customer, token_for):
    return token_for(customer)


@pytest.fixture
def product(client, as_admin):
    response = client.post("/products", json=new_product(), headers=as_admin)
    assert response.status_code == 201
    return response.get_json()


def movements_of(product_id: str) -> list[StockMovement]:
    stmt = select(StockMovement).where(StockMovement.product_id == uuid.UUID(product_id))
    return list(db.session.scalars(stmt.order_by(StockMovement.created_at)))


# ---- create ----------------------------------------------------------------------------------


def test_admin_creates_a_product_201_with_location(client, as_admin):
    response = client.post("/products", json=new_product(price=19.99), headers=as_admin)
    assert response.status_code == 201
    body = response.get_json()
    assert {"productId", "productName", "description", "price", "stock"} <= set(body)
    assert body["productName"] == "Espresso cup"
    assert body["description"] == "Porcelain, 80 ml"
    assert body["price"] == 19.99
    assert body["stock"] == 10
    assert response.headers["Location"].endswith(f"/products/{body['productId']}")
    assert client.get(response.headers["Location"]).get_json() == body


def test_initial_stock_is_the_first_ledger_row(client, product, app_ctx):
    [movement] = movements_of(product["productId"])
    assert (movement.delta, movement.reason, movement.note, movement.stock_after) == (
        10,
        "RESTOCK",
        "initial stock",
        10,
    )


def test_a_product_created_without_stock_has_no_ledger_row(client, as_admin, app_ctx):
    body = client.post("/products", json=new_product(stock=0), headers=as_admin).get_json()
    assert body["stock"] == 0
    assert movements_of(body["productId"]) == []


def test_customer_cannot_create_a_product(client, as_customer):
    problem(client.post("/products", json=new_product(), headers=as_customer), 403)


def test_customer_gets_403_even_with_an_invalid_body(client, as_customer):
    problem(client.post("/products", json={"bogus": True}, headers=as_customer), 403)


def test_anonymous_cannot_create_a_product(client):
    problem(client.post("/products", json=new_product()), 401)


@pytest.mark.parametrize(
    "field, value",
    [
        ("price", -1),
        ("price", 1.999),
        ("price", "abc"),
        ("price", True),
        ("price", 10_000_000_000),
        ("stock", -1),
        ("stock", 1_000_001),
        ("stock", 2.5),
        ("stock", "3"),
        ("productName", ""),
        ("productName", "   "),
        ("productName", "x" * 201),
        ("description", None),
    ],
)
def test_create_validates_fields(client, as_admin, field, value):
    assert (
        field
        in problem(client.post("/products", json=new_product(**{field: value}), headers=as_admin), 422)[
            "errors"
        ]
    )


@pytest.mark.parametrize("missing", ["productName", "description", "price", "stock"])
def test_create_requires_every_field(client, as_admin, missing):
    body = new_product()
    del body[missing]
    assert missing in problem(client.post("/products", json=body, headers=as_admin), 422)["errors"]


@pytest.mark.parametrize("field", ["productId", "currency", "createdAt", "id"])
def test_create_rejects_fields_the_client_may_not_set(client, as_admin, field):
    body = problem(client.post("/products", json=new_product(**{field: "x"}), headers=as_admin), 422)
    assert field in body["errors"]


def test_price_keeps_exact_cents(client, as_admin, app_ctx):
    body = client.post("/products", json=new_product(price=0.1), headers=as_admin).get_json()
    assert body["price"] == 0.1
    # SPEC §5.10 replaces "0 is a price": below 0.01 → 422.
    assert client.post("/products", json=new_product(price=0.01), headers=as_admin).status_code == 201


# ---- read and list ---------------------------------------------------------------------------


def test_anyone_views_a_product(client, product):
    response = client.get(f"/products/{product['productId']}")
    assert response.status_code == 200
    assert response.get_json() == product


def test_unknown_product_is_404(client):
    problem(client.get(f"/products/{uuid.uuid4()}"), 404)
    problem(client.get("/products/not-a-uuid"), 404)


def _create_many(client, headers, names):
    for name in names:
        assert (
            client.post("/products", json=new_product(productName=name), headers=headers).status_code == 201
        )


def test_list_is_paginated_and_ordered_by_name(client, as_admin):
    _create_many(client, as_admin, [f"Item {i:02d}" for i in range(25)])
    first = client.get("/products?page=1&pageSize=10").get_json()
    assert (first["page"], first["pageSize"], first["totalItems"], first["totalPages"]) == (1, 10, 25, 3)
    assert [p["productName"] for p in first["items"]] == [f"Item {i:02d}" for i in range(10)]
    last = client.get("/products?page=3&pageSize=10").get_json()
    assert len(last["items"]) == 5
    assert client.get("/products?page=4&pageSize=10").get_json()["items"] == []


def test_list_defaults_to_page_1_of_20(client, as_admin):
    _create_many(client, as_admin, ["A"])
    body = client.get("/products").get_json()
    assert (body["page"], body["pageSize"], body["totalItems"], body["totalPages"]) == (1, 20, 1, 1)


def test_q_searches_names_case_insensitively(client, as_admin):
    _create_many(client, as_admin, ["Blue Mug", "Red mug", "Kettle", "100% cotton"])
    names = {p["productName"] for p in client.get("/products?q=MUG").get_json()["items"]}
    assert names == {"Blue Mug", "Red mug"}
    assert [p["productName"] for p in client.get("/products?q=%25").get_json()["items"]] == ["100% cotton"]
    assert client.get("/products?q=_").get_json()["items"] == []


@pytest.mark.parametrize("query", ["page=0", "pageSize=0", "pageSize=101", "page=abc"])
def test_bad_pagination_is_422(client, query):
    problem(client.get(f"/products?{query}"), 422)


# ---- update ----------------------------------------------------------------------------------


def test_admin_edits_name_description_and_price(client, product, as_admin):
    response = client.patch(
        f"/products/{product['productId']}",
        json={"productName": "Big cup", "description": "150 ml", "price": 11.25},
        headers=as_admin,
    )
    assert response.status_code == 200
    body = response.get_json()
    assert (body["productName"], body["description"], body["price"], body["stock"]) == (
        "Big cup",
        "150 ml",
        11.25,
        10,
    )


def test_stock_cannot_be_patched(client, product, as_admin):
    body = problem(
        client.patch(f"/products/{product['productId']}", json={"stock": 99}, headers=as_admin), 422
    )
    assert "stock" in body["errors"]
    assert client.get(f"/products/{product['productId']}").get_json()["stock"] == 10


def test_customer_cannot_edit_a_product(client, product, as_customer):
    problem(client.patch(f"/products/{product['productId']}", json={"price": 1}, headers=as_customer), 403)


def test_editing_an_unknown_product_is_404(client, as_admin):
    problem(client.patch(f"/products/{uuid.uuid4()}", json={"price": 1}, headers=as_admin), 404)


def test_patch_validates_price(client, product, as_admin):
    assert (
        "price"
        in problem(
            client.patch(f"/products/{product['productId']}", json={"price": -0.01}, headers=as_admin), 422
        )["errors"]
    )


# ---- stock movements -------------------------------------------------------------------------


def test_restock_is_201_with_the_ledger_row(client, product, as_admin):
    response = client.post(
        f"/products/{product['productId']}/stock-movements",
        json={"delta": 5, "reason": "RESTOCK", "note": "supplier delivery"},
        headers=as_admin,
    )
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == {"movementId", "productId", "delta", "reason", "note", "stockAfter", "createdAt"}
    assert (body["productId"], body["delta"], body["reason"], body["note"], body["stockAfter"]) == (
        product["productId"],
        5,
        "RESTOCK",
        "supplier delivery",
        15,
    )
    assert client.get(f"/products/{product['productId']}").get_json()["stock"] == 15


def test_negative_adjustment_lowers_the_stock(client, product, as_admin):
    body = client.post(
        f"/products/{product['productId']}/stock-movements",
        json={"delta": -10, "reason": "ADJUSTMENT"},
        headers=as_admin,
    ).get_json()
    assert body["stockAfter"] == 0
    assert body["note"] is None


def test_stock_never_goes_below_zero(client, product, as_admin, app_ctx):
    response = client.post(
        f"/products/{product['productId']}/stock-movements",
        json={"delta": -11, "reason": "ADJUSTMENT"},
        headers=as_admin,
    )
    body = problem(response, 409)
    assert body["errors"] == [{"productId": product["productId"], "requested": 11, "available": 10}]
    assert client.get(f"/products/{product['productId']}").get_json()["stock"] == 10
    assert len(movements_of(product["productId"])) == 1


def test_stock_cannot_exceed_the_maximum(client, product, as_admin):
    problem(
        client.post(
            f"/products/{product['productId']}/stock-movements",
            json={"delta": 1_000_000, "reason": "RESTOCK"},
            headers=as_admin,
        ),
        409,
    )


@pytest.mark.parametrize(
    "body, field",
    [
        ({"delta": 0, "reason": "RESTOCK"}, "delta"),
        ({"delta": 1.5, "reason": "RESTOCK"}, "delta"),
        ({"delta": "3", "reason": "RESTOCK"}, "delta"),
        ({"delta": 5, "reason": "ORDER_RESERVE"}, "reason"),
        ({"delta": 5, "reason": "restock"}, "reason"),
        ({"reason": "RESTOCK"}, "delta"),
        ({"delta": 5}, "reason"),
        ({"delta": 5, "reason": "RESTOCK", "stockAfter": 3}, "stockAfter"),
        ({"delta": 5, "reason": "RESTOCK", "note": "x" * 501}, "note"),
    ],
)
def test_stock_movement_validation(client, product, as_admin, body, field):
    response = client.post(f"/products/{product['productId']}/stock-movements", json=body, headers=as_admin)
    assert field in problem(response, 422)["errors"]


def test_customer_cannot_move_stock(client, product, as_customer):
    problem(
        client.post(
            f"/products/{product['productId']}/stock-movements",
            json={"delta": 5, "reason": "RESTOCK"},
            headers=as_customer,
        ),
        403,
    )


def test_stock_movement_on_unknown_product_is_404(client, as_admin):
    problem(
        client.post(
            f"/products/{uuid.uuid4()}/stock-movements",
            json={"delta": 5, "reason": "RESTOCK"},
            headers=as_admin,
        ),
        404,
    )


def test_products_are_in_the_openapi_document(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    assert {"/products", "/products/{productId}", "/products/{productId}/stock-movements"} <= set(paths)
    assert "409" in paths["/products/{productId}/stock-movements"]["post"]["responses"]
    assert "403" in paths["/products"]["post"]["responses"]
