"""SPEC §4 POST /orders: the cart becomes an order in one transaction, or nothing changes."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from app.domain.catalogue import Product, StockMovement
from app.domain.orders import Order
from app.domain.outbox import OutboxMessage
from app.domain.payments import Payment
from app.extensions import db
from app.observability import ORDERS_PLACED
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


def fill(client, user, headers, lines):
    for product_id, quantity in lines.items():
        response = client.post(
            f"/cart/{user.id}/add", json={"productId": str(product_id), "quantity": quantity}, headers=headers
        )
        assert response.status_code == 201, response.get_json()
    return client.get(f"/cart/{user.id}", headers=headers).get_json()["cartId"]


def checkout(client, user, headers, cart_id, **extra):
    return client.post("/orders", json={"userId": str(user.id), "cartId": cart_id, **extra}, headers=headers)


def stock(product_id):
    db.session.expire_all()
    return db.session.get(Product, product_id).stock


def test_checkout_answers_201_with_the_order_and_its_location(client, customer, auth, products):
    apple, bag = products
    cart_id = fill(client, customer, auth, {apple: 3, bag: 2})
    response = checkout(client, customer, auth, cart_id)
    assert response.status_code == 201
    order = response.get_json()
    assert response.headers["Location"].endswith(f"/orders/{order['orderId']}")
    assert order == {
        "orderId": order["orderId"],
        "userId": str(customer.id),
        "status": "PLACED",
        "orderDate": order["orderDate"],
        "orderItems": [
            {"productId": str(apple), "productName": "Apple", "quantity": 3, "price": 2.5, "subtotal": 7.5}
            | {"quantityShipped": 0, "quantityReturned": 0},
            {"productId": str(bag), "productName": "Bag", "quantity": 2, "price": 19.99, "subtotal": 39.98}
            | {"quantityShipped": 0, "quantityReturned": 0},
        ],
        "totalAmount": 47.48,
        "currency": "USD",
        "version": 1,
        "payment": {
            "paymentId": order["payment"]["paymentId"],
            "status": "PENDING",
            "method": "CREDIT_CARD",
            "amount": 47.48,
        },
        "cancelReason": None,
        "paymentDueBy": None,
        "shippingAddress": {
            "line1": "1 Main St",
            "city": "Springfield",
            "postalCode": "12345",
            "country": "US",
        },
        "fulfillmentStatus": "UNFULFILLED",
        "allowedTransitions": ["CANCELLED"],
    }


def test_checkout_reserves_stock_through_the_ledger_and_empties_the_cart(client, customer, auth, products):
    apple, bag = products
    cart_id = fill(client, customer, auth, {apple: 3, bag: 2})
    order_id = checkout(client, customer, auth, cart_id).get_json()["orderId"]
    assert (stock(apple), stock(bag)) == (7, 1)
    reserves = db.session.execute(
        select(StockMovement.product_id, StockMovement.delta).where(
            StockMovement.order_id == uuid.UUID(order_id)
        )
    ).all()
    assert sorted(reserves) == sorted([(apple, -3), (bag, -2)])
    cart = client.get(f"/cart/{customer.id}", headers=auth).get_json()
    assert (cart["cartId"], cart["cartItems"]) == (cart_id, [])


def test_checkout_creates_a_pending_payment_and_an_order_placed_event(client, customer, auth, products):
    cart_id = fill(client, customer, auth, {products[0]: 1})
    body = checkout(
        client, customer, auth, cart_id, paymentMethod="PAYPAL", paymentToken="pm_card_mastercard"
    ).get_json()
    payment = db.session.get(Payment, uuid.UUID(body["payment"]["paymentId"]))
    assert (payment.status, payment.method, payment.payment_token) == (
        "PENDING",
        "PAYPAL",
        "pm_card_mastercard",
    )
    event = db.session.scalars(select(OutboxMessage).where(OutboxMessage.event_type == "OrderPlaced")).one()
    assert event.payload == {
        "order_id": body["orderId"],
        "user_id": str(customer.id),
        "payment_id": body["payment"]["paymentId"],
    }


def test_the_default_payment_token_is_used_when_none_is_given(client, customer, auth, products):
    cart_id = fill(client, customer, auth, {products[0]: 1})
    body = checkout(client, customer, auth, cart_id).get_json()
    assert db.session.get(Payment, uuid.UUID(body["payment"]["paymentId"])).payment_token == "pm_card_visa"


def test_without_a_default_token_a_missing_token_is_422(client, customer, auth, products, app):
    cart_id = fill(client, customer, auth, {products[0]: 1})
    app.config["PAYMENT_DEFAULT_TOKEN"] = ""
    try:
        body = assert_problem(checkout(client, customer, auth, cart_id), 422)
    finally:
        app.config["PAYMENT_DEFAULT_TOKEN"] = "pm_card_visa"
    assert "paymentToken" in body["errors"]


def test_every_short_line_is_listed_and_nothing_changes(
    client, customer, auth, products, make_user, token_for
):
    apple, bag = products
    cart_id = fill(client, customer, auth, {apple: 3, bag: 3})
    # someone else buys two bags meanwhile
    rival = make_user()
    rival_auth = token_for(rival)
    rival_cart = fill(client, rival, rival_auth, {bag: 2})
    assert checkout(client, rival, rival_auth, rival_cart).status_code == 201
    body = assert_problem(checkout(client, customer, auth, cart_id), 409)
    assert body["errors"] == [{"productId": str(bag), "requested": 3, "available": 1}]
    assert (stock(apple), stock(bag)) == (10, 1)
    assert len(client.get(f"/cart/{customer.id}", headers=auth).get_json()["cartItems"]) == 2
    assert db.session.scalar(select(func.count()).select_from(Order).where(Order.user_id == customer.id)) == 0


def test_an_empty_cart_is_422(client, customer, auth):
    cart_id = client.get(f"/cart/{customer.id}", headers=auth).get_json()["cartId"]
    assert_problem(checkout(client, customer, auth, cart_id), 422)


def test_someone_elses_user_or_cart_is_404_for_a_customer(
    client, customer, auth, make_user, token_for, products
):
    other = make_user()
    other_cart = fill(client, other, token_for(other), {products[0]: 1})
    own_cart = client.get(f"/cart/{customer.id}", headers=auth).get_json()["cartId"]
    assert_problem(checkout(client, other, auth, other_cart), 404)
    assert_problem(checkout(client, customer, auth, other_cart), 404)
    assert_problem(checkout(client, customer, auth, str(uuid.uuid4())), 404)
    assert own_cart


def test_an_admin_cannot_check_out_someone_elses_cart(client, customer, auth, admin, token_for, products):
    cart_id = fill(client, customer, auth, {products[0]: 1})
    as_admin = token_for(admin)
    assert_problem(checkout(client, customer, as_admin, cart_id), 403)
    assert_problem(checkout(client, admin, as_admin, cart_id), 403)


@pytest.mark.parametrize(
    "extra",
    [
        {"paymentMethod": "BITCOIN"},
        {"paymentToken": ""},
        {"totalAmount": 1},
        {"status": "SHIPPED"},
    ],
)
def test_bad_or_forbidden_fields_are_422(client, customer, auth, products, extra):
    cart_id = fill(client, customer, auth, {products[0]: 1})
    body = assert_problem(checkout(client, customer, auth, cart_id, **extra), 422)
    assert set(extra) <= set(body["errors"])
    assert stock(products[0]) == 10


def test_checkout_switched_off_is_503(client, customer, auth, products, app):
    from app.domain.operations import Feature
    from app.services.features import feature_cache

    cart_id = fill(client, customer, auth, {products[0]: 1})
    db.session.get(Feature, "checkout").enabled = False
    db.session.commit()
    feature_cache.invalidate()
    try:
        response = checkout(client, customer, auth, cart_id)
    finally:
        feature_cache.invalidate()
    assert_problem(response, 503)
    assert response.headers["Retry-After"]
    assert stock(products[0]) == 10


def _roll_out_checkout(percent: int) -> None:
    from app.domain.operations import Feature
    from app.services.features import feature_cache

    db.session.get(Feature, "checkout").rollout_percent = percent
    db.session.commit()
    feature_cache.invalidate()


def test_checkout_rolled_out_to_part_of_the_users_is_503_for_the_others(client, customer, auth, products):
    from app.domain.rollout import rollout_bucket
    from app.services.features import feature_cache

    bucket = rollout_bucket("checkout", customer.id)
    cart_id = fill(client, customer, auth, {products[0]: 1})
    try:
        _roll_out_checkout(bucket)  # the customer's bucket is not below it: off for them
        refused = checkout(client, customer, auth, cart_id)
        _roll_out_checkout(bucket + 1)  # now it is: on
        placed = checkout(client, customer, auth, cart_id)
    finally:
        feature_cache.invalidate()
    assert_problem(refused, 503)
    assert placed.status_code == 201, placed.get_json()
    assert stock(products[0]) == 9


def test_placing_an_order_counts_it_in_the_metrics(client, customer, auth, products):
    before = ORDERS_PLACED._value.get()
    cart_id = fill(client, customer, auth, {products[0]: 1})
    checkout(client, customer, auth, cart_id)
    assert ORDERS_PLACED._value.get() == before + 1
