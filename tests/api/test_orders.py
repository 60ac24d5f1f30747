"""SPEC §4 Orders: reads, status transitions with optimistic locking, history, soft delete."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from app.domain.catalogue import Product
from app.domain.outbox import OutboxMessage
from app.domain.payments import Payment
from app.extensions import db
from tests.api.test_conventions import assert_problem
from tests.shop import make_product


@pytest.fixture
def auth(customer, token_for):
    return token_for(customer)


@pytest.fixture
def as_admin(admin, token_for):
    return token_for(admin)


@pytest.fixture
def apple(app_ctx):
    return make_product(db.session, price="2.50", stock=10, name="Apple").id


def place(client, user, headers, lines):
    for product_id, quantity in lines.items():
        client.post(
            f"/cart/{user.id}/add", json={"productId": str(product_id), "quantity": quantity}, headers=headers
        )
    cart_id = client.get(f"/cart/{user.id}", headers=headers).get_json()["cartId"]
    response = client.post("/orders", json={"userId": str(user.id), "cartId": cart_id}, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


@pytest.fixture
def order(client, customer, auth, apple):
    return place(client, customer, auth, {apple: 2})


def set_payment(order, status):
    payment = db.session.get(Payment, uuid.UUID(order["payment"]["paymentId"]))
    payment.status = status
    db.session.commit()


def put(client, order, auth, status, body=None, headers=None):
    return client.put(
        f"/orders/{order['orderId']}",
        json={"status": status, **(body or {})},
        headers={**auth, **(headers or {})},
    )


def stock(product_id):
    db.session.expire_all()
    return db.session.get(Product, product_id).stock


# ---- reads --------------------------------------------------------------------------------------


def test_the_owner_reads_the_order_with_its_etag(client, auth, order):
    response = client.get(f"/orders/{order['orderId']}", headers=auth)
    assert response.status_code == 200
    assert response.get_json() == order
    assert response.headers["ETag"] == '"1"'


def test_another_customers_order_is_404_and_an_admin_reads_it(client, order, make_user, token_for, as_admin):
    assert_problem(client.get(f"/orders/{order['orderId']}", headers=token_for(make_user())), 404)
    assert client.get(f"/orders/{order['orderId']}", headers=as_admin).status_code == 200


def test_an_unknown_or_malformed_order_id_is_404(client, auth):
    assert_problem(client.get(f"/orders/{uuid.uuid4()}", headers=auth), 404)
    assert_problem(client.get("/orders/not-a-uuid", headers=auth), 404)


def test_a_customer_lists_their_own_orders_newest_first(client, customer, auth, apple, make_user, token_for):
    first = place(client, customer, auth, {apple: 1})
    second = place(client, customer, auth, {apple: 1})
    other = make_user()
    place(client, other, token_for(other), {apple: 1})
    body = client.get("/orders", headers=auth).get_json()
    assert [o["orderId"] for o in body["items"]] == [second["orderId"], first["orderId"]]
    assert (body["page"], body["pageSize"], body["totalItems"], body["totalPages"]) == (1, 20, 2, 1)
    assert body["items"][0] == second


def test_lists_are_paginated_and_filtered_by_status(client, customer, auth, apple):
    orders = [place(client, customer, auth, {apple: 1}) for _ in range(3)]
    client.put(f"/orders/{orders[0]['orderId']}", json={"status": "CANCELLED"}, headers=auth)
    page = client.get("/orders?page=2&pageSize=2", headers=auth).get_json()
    assert ([o["orderId"] for o in page["items"]], page["totalItems"], page["totalPages"]) == (
        [orders[0]["orderId"]],
        3,
        2,
    )
    cancelled = client.get("/orders?status=CANCELLED", headers=auth).get_json()
    assert [o["orderId"] for o in cancelled["items"]] == [orders[0]["orderId"]]
    assert_problem(client.get("/orders?status=LOST", headers=auth), 422)
    assert_problem(client.get("/orders?pageSize=101", headers=auth), 422)


def test_an_admin_lists_everyones_orders_or_one_users(
    client, customer, auth, apple, make_user, token_for, as_admin
):
    mine = place(client, customer, auth, {apple: 1})
    other = make_user()
    theirs = place(client, other, token_for(other), {apple: 1})
    everyone = client.get("/orders", headers=as_admin).get_json()
    assert {o["orderId"] for o in everyone["items"]} == {mine["orderId"], theirs["orderId"]}
    one = client.get(f"/orders?userId={other.id}", headers=as_admin).get_json()
    assert [o["orderId"] for o in one["items"]] == [theirs["orderId"]]


def test_a_customer_filtering_by_another_user_is_404(client, auth, make_user):
    assert_problem(client.get(f"/orders?userId={make_user().id}", headers=auth), 404)


# ---- transitions ----------------------------------------------------------------------------------


def test_an_admin_ships_a_paid_order_then_delivers_it(client, order, as_admin):
    set_payment(order, "COMPLETED")
    shipped = put(client, order, as_admin, "SHIPPED")
    assert shipped.status_code == 200
    assert shipped.get_json() == {"orderId": order["orderId"], "status": "SHIPPED", "version": 2}
    delivered = put(client, order, as_admin, "DELIVERED")
    assert delivered.get_json() == {"orderId": order["orderId"], "status": "DELIVERED", "version": 3}
    events = db.session.scalars(select(OutboxMessage.event_type).order_by(OutboxMessage.id)).all()
    assert events == ["OrderPlaced", "OrderShipped", "OrderDelivered"]


def test_shipping_before_the_payment_is_completed_is_409(client, order, as_admin):
    assert_problem(put(client, order, as_admin, "SHIPPED"), 409)


def test_a_customer_asking_to_ship_their_own_order_is_403_before_any_state_check(client, order, auth):
    assert_problem(put(client, order, auth, "SHIPPED"), 403)  # the state alone would be 409
    assert_problem(put(client, order, auth, "DELIVERED"), 403)


def test_the_current_status_again_is_200_and_changes_nothing(client, order, auth):
    response = put(client, order, auth, "PLACED")
    assert response.get_json() == {"orderId": order["orderId"], "status": "PLACED", "version": 1}


def test_transitions_outside_the_table_are_409(client, order, as_admin):
    set_payment(order, "COMPLETED")
    assert_problem(put(client, order, as_admin, "DELIVERED"), 409)  # PLACED → DELIVERED
    put(client, order, as_admin, "SHIPPED")
    assert_problem(put(client, order, as_admin, "CANCELLED"), 409)  # SHIPPED → CANCELLED
    assert_problem(put(client, order, as_admin, "PLACED"), 409)  # back to PLACED


def test_the_owner_cancels_stock_returns_and_the_payment_is_voided(client, order, auth, apple):
    assert stock(apple) == 8
    response = put(client, order, auth, "CANCELLED")
    assert response.get_json() == {"orderId": order["orderId"], "status": "CANCELLED", "version": 2}
    assert stock(apple) == 10
    body = client.get(f"/orders/{order['orderId']}", headers=auth).get_json()
    assert (body["cancelReason"], body["payment"]["status"]) == ("CANCELLED_BY_CUSTOMER", "FAILED")
    payment = db.session.get(Payment, uuid.UUID(order["payment"]["paymentId"]))
    assert payment.failure_reason == "ORDER_CANCELLED"


def test_an_admin_cancelling_a_paid_order_requests_its_refund(client, order, as_admin):
    set_payment(order, "COMPLETED")
    put(client, order, as_admin, "CANCELLED")
    assert client.get(f"/orders/{order['orderId']}", headers=as_admin).get_json()["cancelReason"] == (
        "CANCELLED_BY_ADMIN"
    )
    events = db.session.scalars(select(OutboxMessage.event_type).order_by(OutboxMessage.id)).all()
    assert events == ["OrderPlaced", "RefundRequested", "OrderCancelled"]


def test_another_customer_cannot_touch_the_order(client, order, make_user, token_for):
    assert_problem(put(client, order, token_for(make_user()), "CANCELLED"), 404)


@pytest.mark.parametrize(
    "body", [{}, {"status": "LOST"}, {"status": "CANCELLED", "version": 0}, {"status": "CANCELLED", "x": 1}]
)
def test_bad_bodies_are_422(client, order, auth, body):
    assert_problem(client.put(f"/orders/{order['orderId']}", json=body, headers=auth), 422)


# ---- optimistic locking -----------------------------------------------------------------------------


@pytest.mark.parametrize("tag", ['"1"', "1", 'W/"1"', '"7", "1"', "*"])
def test_a_matching_if_match_is_accepted_in_any_common_form(client, order, auth, tag):
    assert put(client, order, auth, "CANCELLED", headers={"If-Match": tag}).status_code == 200


@pytest.mark.parametrize("tag", ['"2"', "2", 'W/"2"', "garbage"])
def test_an_if_match_that_does_not_match_is_412_and_changes_nothing(client, order, auth, tag):
    assert_problem(put(client, order, auth, "CANCELLED", headers={"If-Match": tag}), 412)
    assert client.get(f"/orders/{order['orderId']}", headers=auth).get_json()["status"] == "PLACED"


def test_a_body_version_that_does_not_match_is_409_with_the_current_version(client, order, auth):
    body = assert_problem(put(client, order, auth, "CANCELLED", body={"version": 5}), 409)
    assert body["currentVersion"] == 1
    assert put(client, order, auth, "CANCELLED", body={"version": 1}).status_code == 200


def test_the_etag_follows_the_version(client, order, auth):
    put(client, order, auth, "CANCELLED")
    assert client.get(f"/orders/{order['orderId']}", headers=auth).headers["ETag"] == '"2"'


# ---- history ---------------------------------------------------------------------------------------


def test_the_history_lists_every_transition_oldest_first(client, customer, order, auth, admin, as_admin):
    set_payment(order, "COMPLETED")
    put(client, order, as_admin, "SHIPPED", headers={"X-Request-ID": "ship-1"})
    response = client.get(f"/orders/{order['orderId']}/history", headers=auth)
    assert response.status_code == 200
    items = response.get_json()["items"]
    assert [(i["fromStatus"], i["toStatus"]) for i in items] == [(None, "PLACED"), ("PLACED", "SHIPPED")]
    assert items[0]["actor"] == f"customer:{customer.id}"
    assert (items[1]["actor"], items[1]["requestId"], items[1]["reason"]) == (
        f"admin:{admin.id}",
        "ship-1",
        None,
    )
    assert set(items[0]) == {"fromStatus", "toStatus", "actor", "reason", "requestId", "at"}


def test_the_history_of_someone_elses_order_is_404(client, order, make_user, token_for):
    assert_problem(client.get(f"/orders/{order['orderId']}/history", headers=token_for(make_user())), 404)


# ---- delete ----------------------------------------------------------------------------------------


def test_deleting_a_placed_order_cancels_it_first_then_hides_it_from_its_owner(
    client, order, auth, as_admin, apple
):
    assert client.delete(f"/orders/{order['orderId']}", headers=auth).status_code == 204
    assert stock(apple) == 10
    assert_problem(client.get(f"/orders/{order['orderId']}", headers=auth), 404)
    assert client.get("/orders", headers=auth).get_json()["items"] == []
    kept = client.get(f"/orders/{order['orderId']}", headers=as_admin).get_json()
    assert (kept["status"], kept["cancelReason"], kept["payment"]["status"]) == (
        "CANCELLED",
        "CANCELLED_BY_CUSTOMER",
        "FAILED",
    )
    assert_problem(client.delete(f"/orders/{order['orderId']}", headers=auth), 404)


def test_deleting_a_cancelled_order_hides_it(client, order, auth):
    put(client, order, auth, "CANCELLED")
    assert client.delete(f"/orders/{order['orderId']}", headers=auth).status_code == 204
    assert_problem(client.get(f"/orders/{order['orderId']}", headers=auth), 404)


def test_a_shipped_order_cannot_be_deleted(client, order, auth, as_admin):
    set_payment(order, "COMPLETED")
    put(client, order, as_admin, "SHIPPED")
    assert_problem(client.delete(f"/orders/{order['orderId']}", headers=auth), 409)
    assert_problem(client.delete(f"/orders/{order['orderId']}", headers=as_admin), 409)


def test_another_customer_cannot_delete_the_order(client, order, make_user, token_for, auth):
    assert_problem(client.delete(f"/orders/{order['orderId']}", headers=token_for(make_user())), 404)
    assert client.get(f"/orders/{order['orderId']}", headers=auth).status_code == 200


def test_an_admin_may_delete_an_order(client, order, as_admin):
    assert client.delete(f"/orders/{order['orderId']}", headers=as_admin).status_code == 204
    assert client.get(f"/orders/{order['orderId']}", headers=as_admin).get_json()["cancelReason"] == (
        "CANCELLED_BY_ADMIN"
    )
