"""SPEC §5.1: the shipping address snapshot, shipments with tracking, the order following its units."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from app.domain.outbox import OutboxMessage
from app.domain.users import User
from app.extensions import db
from tests.api.test_conventions import assert_problem
from tests.api.test_orders import place, put, set_payment
from tests.shop import make_product

ADDRESS = {"line1": "1 Main St", "city": "Springfield", "postalCode": "12345", "country": "US"}
ELSEWHERE = {
    "line1": "9 Harbour Rd",
    "line2": "Flat 2",
    "city": "Portsmouth",
    "postalCode": "PO1 2AB",
    "country": "GB",
}


@pytest.fixture
def auth(customer, token_for):
    return token_for(customer)


@pytest.fixture
def as_admin(admin, token_for):
    return token_for(admin)


@pytest.fixture
def products(app_ctx):
    return (
        make_product(db.session, price="2.50", stock=10, name="Apple").id,
        make_product(db.session, price="4.00", stock=10, name="Pear").id,
    )


@pytest.fixture
def order(client, customer, auth, products):
    apple, pear = products
    placed = place(client, customer, auth, {apple: 3, pear: 1})
    set_payment(placed, "COMPLETED")
    return placed


def ship(client, order, headers, body=None, **kwargs):
    body = {"carrier": "UPS", "trackingNumber": "1Z1", **(body or {})}
    return client.post(f"/orders/{order['orderId']}/shipments", json=body, headers=headers, **kwargs)


def read(client, order, headers):
    return client.get(f"/orders/{order['orderId']}", headers=headers).get_json()


def events():
    db.session.expire_all()
    return db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()


# ---- the shipping address -------------------------------------------------------------------------


def test_checkout_defaults_the_shipping_address_to_the_profile_and_keeps_a_snapshot(
    client, customer, auth, products
):
    placed = place(client, customer, auth, {products[0]: 1})
    assert placed["shippingAddress"] == ADDRESS
    client.patch(f"/users/{customer.id}", json={"address": ELSEWHERE}, headers=auth)
    assert read(client, placed, auth)["shippingAddress"] == ADDRESS


def test_checkout_takes_a_shipping_address(client, customer, auth, products):
    client.post(f"/cart/{customer.id}/add", json={"productId": str(products[0]), "quantity": 1}, headers=auth)
    cart_id = client.get(f"/cart/{customer.id}", headers=auth).get_json()["cartId"]
    response = client.post(
        "/orders",
        json={"userId": str(customer.id), "cartId": cart_id, "shippingAddress": ELSEWHERE},
        headers=auth,
    )
    assert response.status_code == 201
    assert response.get_json()["shippingAddress"] == ELSEWHERE


def test_a_user_without_address_and_no_shipping_address_is_422_and_nothing_changes(
    client, customer, auth, products
):
    db.session.get(User, customer.id).address = None
    db.session.commit()
    client.post(f"/cart/{customer.id}/add", json={"productId": str(products[0]), "quantity": 1}, headers=auth)
    cart_id = client.get(f"/cart/{customer.id}", headers=auth).get_json()["cartId"]
    body = assert_problem(
        client.post("/orders", json={"userId": str(customer.id), "cartId": cart_id}, headers=auth), 422
    )
    assert "shippingAddress" in body["errors"]
    assert client.get(f"/cart/{customer.id}", headers=auth).get_json()["cartItems"]  # cart kept


@pytest.mark.parametrize(
    "address",
    [{"line1": "x"}, {**ADDRESS, "country": "usa"}, {**ADDRESS, "extra": 1}, "1 Main St", None],
)
def test_a_bad_shipping_address_is_422(client, customer, auth, products, address):
    client.post(f"/cart/{customer.id}/add", json={"productId": str(products[0]), "quantity": 1}, headers=auth)
    cart_id = client.get(f"/cart/{customer.id}", headers=auth).get_json()["cartId"]
    response = client.post(
        "/orders",
        json={"userId": str(customer.id), "cartId": cart_id, "shippingAddress": address},
        headers=auth,
    )
    assert "shippingAddress" in assert_problem(response, 422)["errors"]


# ---- shipments --------------------------------------------------------------------------------------


def test_a_new_order_is_unfulfilled_and_the_owner_may_cancel_it(client, order, auth, as_admin):
    body = read(client, order, auth)
    assert body["fulfillmentStatus"] == "UNFULFILLED"
    assert body["allowedTransitions"] == ["CANCELLED"]
    assert read(client, order, as_admin)["allowedTransitions"] == ["SHIPPED", "CANCELLED"]
    assert [(i["quantityShipped"], i["quantityReturned"]) for i in body["orderItems"]] == [(0, 0), (0, 0)]


def test_a_partial_shipment_with_tracking(client, order, products, auth, as_admin):
    apple, pear = products
    response = ship(
        client,
        order,
        as_admin,
        {"items": [{"productId": str(apple), "quantity": 2}], "trackingUrl": "https://ups.example/track/1Z1"},
    )
    assert response.status_code == 201, response.get_json()
    shipment = response.get_json()
    assert response.headers["Location"].endswith(
        f"/orders/{order['orderId']}/shipments/{shipment['shipmentId']}"
    )
    assert shipment["items"] == [{"productId": str(apple), "quantity": 2}]
    assert (shipment["carrier"], shipment["trackingNumber"], shipment["trackingUrl"]) == (
        "UPS",
        "1Z1",
        "https://ups.example/track/1Z1",
    )
    assert (shipment["status"], shipment["deliveredAt"]) == ("SHIPPED", None)
    body = read(client, order, auth)
    assert (body["status"], body["fulfillmentStatus"]) == ("PLACED", "PARTIALLY_SHIPPED")
    assert {i["productId"]: i["quantityShipped"] for i in body["orderItems"]} == {str(apple): 2, str(pear): 0}
    assert body["allowedTransitions"] == []  # units have left: no cancelling
    assert client.get(response.headers["Location"], headers=auth).get_json() == shipment
    shipped = [m for m in events() if m.event_type == "OrderShipped"]
    assert [(m.payload["carrier"], m.payload["tracking_number"]) for m in shipped] == [("UPS", "1Z1")]


def test_cancelling_a_partly_shipped_order_is_409(client, order, products, auth):
    ship(client, order, _admin_headers(client), {"items": [{"productId": str(products[0]), "quantity": 1}]})
    assert_problem(put(client, order, auth, "CANCELLED"), 409)
    assert_problem(client.delete(f"/orders/{order['orderId']}", headers=auth), 409)


def _admin_headers(client):
    # a second admin, for tests that need one without the fixture
    from app.api.security import issue_token
    from app.domain.users import User as U

    admin = U(email=f"a-{uuid.uuid4().hex[:8]}@example.com", name="A", password_hash="x", role="admin")
    db.session.add(admin)
    db.session.commit()
    with client.application.test_request_context():
        token, _ = issue_token(admin)
    return {"Authorization": f"Bearer {token}"}


def test_shipping_in_two_parts_then_delivering_each(client, order, products, auth, as_admin):
    apple, _ = products
    first = ship(client, order, as_admin, {"items": [{"productId": str(apple), "quantity": 2}]}).get_json()
    second = ship(client, order, as_admin, {"carrier": "DHL", "trackingNumber": "JD2"}).get_json()
    assert {(i["productId"], i["quantity"]) for i in second["items"]} == {
        (str(apple), 1),
        (str(products[1]), 1),
    }
    body = read(client, order, auth)
    assert (body["status"], body["fulfillmentStatus"]) == ("SHIPPED", "SHIPPED")
    assert_problem(ship(client, order, as_admin), 409)  # nothing left to ship

    url = f"/orders/{order['orderId']}/shipments"
    listed = client.get(url, headers=auth).get_json()["items"]
    assert [s["shipmentId"] for s in listed] == [first["shipmentId"], second["shipmentId"]]

    delivered = client.put(f"{url}/{first['shipmentId']}", json={"status": "DELIVERED"}, headers=as_admin)
    assert delivered.status_code == 200 and delivered.get_json()["status"] == "DELIVERED"
    assert delivered.get_json()["deliveredAt"]
    assert read(client, order, auth)["status"] == "SHIPPED"
    client.put(f"{url}/{second['shipmentId']}", json={"status": "DELIVERED"}, headers=as_admin)
    body = read(client, order, auth)
    assert (body["status"], body["fulfillmentStatus"]) == ("DELIVERED", "DELIVERED")
    again = client.put(f"{url}/{second['shipmentId']}", json={"status": "DELIVERED"}, headers=as_admin)
    assert again.status_code == 200
    assert_problem(
        client.put(f"{url}/{second['shipmentId']}", json={"status": "SHIPPED"}, headers=as_admin), 409
    )

    names = [m.event_type for m in events()]
    assert names == ["OrderPlaced", "OrderShipped", "OrderShipped", "OrderDelivered"]
    history = client.get(f"/orders/{order['orderId']}/history", headers=auth).get_json()["items"]
    assert [(h["fromStatus"], h["toStatus"]) for h in history][1:] == [
        ("PLACED", "SHIPPED"),
        ("SHIPPED", "DELIVERED"),
    ]


def test_a_quantity_above_what_is_left_is_409_with_the_lines(client, order, products, as_admin):
    apple, pear = products
    ship(client, order, as_admin, {"items": [{"productId": str(apple), "quantity": 2}]})
    body = assert_problem(
        ship(
            client,
            order,
            as_admin,
            {"items": [{"productId": str(apple), "quantity": 2}, {"productId": str(pear), "quantity": 1}]},
        ),
        409,
    )
    assert body["errors"] == [{"productId": str(apple), "requested": 2, "remaining": 1}]


def test_a_product_not_in_the_order_is_422(client, order, as_admin):
    response = ship(client, order, as_admin, {"items": [{"productId": str(uuid.uuid4()), "quantity": 1}]})
    assert_problem(response, 422)


def test_an_unpaid_order_does_not_ship(client, customer, auth, products, as_admin):
    placed = place(client, customer, auth, {products[0]: 1})
    assert_problem(ship(client, placed, as_admin), 409)


def test_a_customer_may_not_ship_even_their_own_order(client, order, auth):
    assert_problem(ship(client, order, auth), 403)


def test_shipments_of_another_customers_order_are_404(client, order, make_user, token_for, as_admin):
    shipment = ship(client, order, as_admin).get_json()
    stranger = token_for(make_user())
    url = f"/orders/{order['orderId']}/shipments"
    assert_problem(client.get(url, headers=stranger), 404)
    assert_problem(client.get(f"{url}/{shipment['shipmentId']}", headers=stranger), 404)
    assert_problem(client.get(f"{url}/{uuid.uuid4()}", headers=as_admin), 404)


@pytest.mark.parametrize(
    "body",
    [
        {"trackingNumber": "1"},
        {"carrier": "", "trackingNumber": "1"},
        {"carrier": "UPS", "trackingNumber": "1", "trackingUrl": "javascript:alert(1)"},
        {"carrier": "UPS", "trackingNumber": "1", "items": []},
        {"carrier": "UPS", "trackingNumber": "1", "items": [{"productId": "x", "quantity": 1}]},
        {"carrier": "UPS", "trackingNumber": "1", "items": [{"productId": str(uuid.uuid4()), "quantity": 0}]},
        {"carrier": "UPS", "trackingNumber": "1", "status": "SHIPPED"},
    ],
)
def test_bad_shipment_bodies_are_422(client, order, as_admin, body):
    response = client.post(f"/orders/{order['orderId']}/shipments", json=body, headers=as_admin)
    assert_problem(response, 422)


def test_duplicate_lines_are_422(client, order, products, as_admin):
    line = {"productId": str(products[0]), "quantity": 1}
    assert_problem(ship(client, order, as_admin, {"items": [line, line]}), 422)


def test_a_shipment_is_idempotent(client, order, products, as_admin):
    headers = {**as_admin, "Idempotency-Key": "ship-1"}
    body = {"items": [{"productId": str(products[0]), "quantity": 1}]}
    first = ship(client, order, headers, body)
    again = ship(client, order, headers, body)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert again.headers["Location"] == first.headers["Location"]
    assert len(client.get(f"/orders/{order['orderId']}/shipments", headers=as_admin).get_json()["items"]) == 1
    assert_problem(
        ship(client, order, headers, {"items": [{"productId": str(products[0]), "quantity": 2}]}), 422
    )


def test_put_shipped_still_ships_every_remaining_unit_as_one_shipment(
    client, order, products, as_admin, auth
):
    ship(client, order, as_admin, {"items": [{"productId": str(products[0]), "quantity": 1}]})
    response = put(client, order, as_admin, "SHIPPED")
    assert response.status_code == 200 and response.get_json()["status"] == "SHIPPED"
    shipments = client.get(f"/orders/{order['orderId']}/shipments", headers=auth).get_json()["items"]
    assert len(shipments) == 2
    assert (shipments[1]["carrier"], shipments[1]["trackingNumber"]) == (None, None)
    assert {(i["productId"], i["quantity"]) for i in shipments[1]["items"]} == {
        (str(products[0]), 2),
        (str(products[1]), 1),
    }
    assert put(client, order, as_admin, "DELIVERED").get_json()["status"] == "DELIVERED"
    shipments = client.get(f"/orders/{order['orderId']}/shipments", headers=auth).get_json()["items"]
    assert [s["status"] for s in shipments] == ["DELIVERED", "DELIVERED"]
