"""SPEC §4 Cart: one open cart per user at current prices; only its user changes it."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from app.domain.catalogue import Product
from app.extensions import db
from tests.api.test_conventions import assert_problem
from tests.shop import make_product


@pytest.fixture
def products(app_ctx):
    return [
        make_product(db.session, price="2.50", stock=10, name="Apple").id,
        make_product(db.session, price="19.99", stock=3, name="Bag").id,
    ]


@pytest.fixture
def auth(customer, token_for):
    return token_for(customer)


def add(client, user, headers, product_id, quantity):
    return client.post(
        f"/cart/{user.id}/add", json={"productId": str(product_id), "quantity": quantity}, headers=headers
    )


def test_a_cart_is_created_on_first_use_and_keeps_its_id(client, customer, auth):
    first = client.get(f"/cart/{customer.id}", headers=auth)
    assert first.status_code == 200
    body = first.get_json()
    assert body == {
        "cartId": body["cartId"],
        "userId": str(customer.id),
        "cartItems": [],
        "totalAmount": 0.0,
        "currency": "USD",
    }
    assert client.get(f"/cart/{customer.id}", headers=auth).get_json()["cartId"] == body["cartId"]


def test_adding_an_item_answers_201_with_the_cart_at_current_prices(client, customer, auth, products):
    apple, bag = products
    response = add(client, customer, auth, apple, 3)
    assert response.status_code == 201
    body = response.get_json()
    assert body["message"] == "Item added to cart"
    assert body["cart"]["cartItems"] == [
        {"productId": str(apple), "productName": "Apple", "quantity": 3, "price": 2.5, "subtotal": 7.5}
    ]
    add(client, customer, auth, bag, 2)
    cart = client.get(f"/cart/{customer.id}", headers=auth).get_json()
    assert [i["productId"] for i in cart["cartItems"]] == [str(apple), str(bag)]
    assert cart["totalAmount"] == 47.48  # 7.50 + 39.98, exact


def test_adding_a_product_already_in_the_cart_adds_to_its_quantity(client, customer, auth, products):
    add(client, customer, auth, products[0], 3)
    body = add(client, customer, auth, products[0], 4).get_json()
    assert [(i["quantity"], i["subtotal"]) for i in body["cart"]["cartItems"]] == [(7, 17.5)]


def test_the_cart_shows_the_current_price(client, customer, auth, products, app):
    add(client, customer, auth, products[0], 2)
    with app.app_context():
        db.session.get(Product, products[0]).price = Decimal("3.10")
        db.session.commit()
    item = client.get(f"/cart/{customer.id}", headers=auth).get_json()["cartItems"][0]
    assert (item["price"], item["subtotal"]) == (3.1, 6.2)


def test_an_unknown_product_is_404(client, customer, auth):
    assert_problem(add(client, customer, auth, uuid.uuid4(), 1), 404)


def test_a_line_above_current_stock_is_409_and_changes_nothing(client, customer, auth, products):
    bag = products[1]
    add(client, customer, auth, bag, 2)
    body = assert_problem(add(client, customer, auth, bag, 2), 409)
    assert body["errors"] == [{"productId": str(bag), "requested": 4, "available": 3}]
    assert client.get(f"/cart/{customer.id}", headers=auth).get_json()["cartItems"][0]["quantity"] == 2


def test_a_first_add_above_stock_is_409(client, customer, auth, products):
    assert_problem(add(client, customer, auth, products[1], 4), 409)
    assert client.get(f"/cart/{customer.id}", headers=auth).get_json()["cartItems"] == []


def test_a_line_above_1000_units_is_409(client, customer, auth, app_ctx):
    plenty = make_product(db.session, stock=5000).id
    assert add(client, customer, auth, plenty, 600).status_code == 201
    body = assert_problem(add(client, customer, auth, plenty, 600), 409)
    assert "1000" in body["detail"]


@pytest.mark.parametrize("quantity", [0, -1, 1001, 1.5, "2", True, None])
def test_a_quantity_outside_1_to_1000_or_not_an_integer_is_422(client, customer, auth, products, quantity):
    body = assert_problem(add(client, customer, auth, products[0], quantity), 422)
    assert "quantity" in body["errors"]


def test_unknown_fields_and_missing_fields_are_422(client, customer, auth, products):
    response = client.post(
        f"/cart/{customer.id}/add",
        json={"productId": str(products[0]), "quantity": 1, "price": 0.01},
        headers=auth,
    )
    assert "price" in assert_problem(response, 422)["errors"]
    assert (
        "productId"
        in assert_problem(client.post(f"/cart/{customer.id}/add", json={"quantity": 1}, headers=auth), 422)[
            "errors"
        ]
    )


def test_updating_a_quantity_answers_the_cart(client, customer, auth, products):
    add(client, customer, auth, products[0], 2)
    response = client.put(f"/cart/{customer.id}/items/{products[0]}", json={"quantity": 5}, headers=auth)
    assert response.status_code == 200
    assert response.get_json()["cartItems"][0]["quantity"] == 5
    assert response.get_json()["totalAmount"] == 12.5


def test_updating_above_stock_is_409_and_a_line_not_in_the_cart_is_404(client, customer, auth, products):
    add(client, customer, auth, products[1], 1)
    put = client.put(f"/cart/{customer.id}/items/{products[1]}", json={"quantity": 4}, headers=auth)
    assert_problem(put, 409)
    missing = client.put(f"/cart/{customer.id}/items/{products[0]}", json={"quantity": 1}, headers=auth)
    assert_problem(missing, 404)
    assert_problem(
        client.put(f"/cart/{customer.id}/items/{products[0]}", json={"quantity": 0}, headers=auth), 422
    )


def test_removing_an_item_is_204_and_then_404(client, customer, auth, products):
    add(client, customer, auth, products[0], 2)
    add(client, customer, auth, products[1], 1)
    assert client.delete(f"/cart/{customer.id}/items/{products[0]}", headers=auth).status_code == 204
    items = client.get(f"/cart/{customer.id}", headers=auth).get_json()["cartItems"]
    assert [i["productId"] for i in items] == [str(products[1])]
    assert_problem(client.delete(f"/cart/{customer.id}/items/{products[0]}", headers=auth), 404)


def test_emptying_the_cart_keeps_its_id(client, customer, auth, products):
    cart_id = add(client, customer, auth, products[0], 2).get_json()["cart"]["cartId"]
    assert client.delete(f"/cart/{customer.id}", headers=auth).status_code == 204
    body = client.get(f"/cart/{customer.id}", headers=auth).get_json()
    assert (body["cartId"], body["cartItems"]) == (cart_id, [])


def test_another_customers_cart_is_404_for_reads_and_writes(client, customer, make_user, token_for, products):
    other = token_for(make_user())
    assert_problem(client.get(f"/cart/{customer.id}", headers=other), 404)
    assert_problem(add(client, customer, other, products[0], 1), 404)
    assert_problem(client.delete(f"/cart/{customer.id}", headers=other), 404)


def test_an_admin_may_read_a_cart_but_not_change_it(client, customer, auth, admin, token_for, products):
    add(client, customer, auth, products[0], 2)
    as_admin = token_for(admin)
    assert client.get(f"/cart/{customer.id}", headers=as_admin).get_json()["cartItems"][0]["quantity"] == 2
    assert_problem(add(client, customer, as_admin, products[0], 1), 403)
    assert_problem(
        client.put(f"/cart/{customer.id}/items/{products[0]}", json={"quantity": 1}, headers=as_admin), 403
    )
    assert_problem(client.delete(f"/cart/{customer.id}/items/{products[0]}", headers=as_admin), 403)
    assert_problem(client.delete(f"/cart/{customer.id}", headers=as_admin), 403)


def cart_rows(app, user_id) -> int:
    from sqlalchemy import func, select

    from app.domain.carts import Cart

    with app.app_context():
        return int(db.session.scalar(select(func.count()).where(Cart.user_id == user_id)) or 0)


def test_an_admin_reading_a_cart_never_creates_one(app, client, customer, auth, admin, token_for):
    as_admin = token_for(admin)
    for _ in range(2):
        read = client.get(f"/cart/{customer.id}", headers=as_admin)
        assert read.status_code == 200
        assert read.get_json() == {
            "cartId": None,
            "userId": str(customer.id),
            "cartItems": [],
            "totalAmount": 0.0,
            "currency": "USD",
        }
    assert cart_rows(app, customer.id) == 0, "the admin's read wrote a cart"
    # The owner's own first use still creates it, and the admin then reads its id.
    own = client.get(f"/cart/{customer.id}", headers=auth).get_json()["cartId"]
    assert own and cart_rows(app, customer.id) == 1
    assert client.get(f"/cart/{customer.id}", headers=as_admin).get_json()["cartId"] == own


def test_an_admin_reading_the_cart_of_an_unknown_user_gets_404(client, admin, token_for):
    assert_problem(client.get(f"/cart/{uuid.uuid4()}", headers=token_for(admin)), 404)


def test_without_a_token_it_is_401(client, customer):
    assert_problem(client.get(f"/cart/{customer.id}"), 401)
