"""OWASP API1:2023 (broken object level authorization), beyond the route matrix.

``tests/api/test_authorization_matrix.py`` checks every route for four callers with the ids in the
path. This adds what a status code alone does not show: lists never include another user's
objects, a filter naming another user is a 404, and a body mixing the caller's id with someone
else's object is a 404 that changes nothing.
"""

from __future__ import annotations

from tests.api import test_authorization_matrix as matrix


def test_a_customers_order_list_holds_only_their_orders(app, client):
    world = matrix.build_world(app)
    other = client.get("/orders", headers=world.headers["other"]).get_json()
    assert other["items"] == [] and other["totalItems"] == 0
    owner = client.get("/orders", headers=world.headers["owner"]).get_json()
    assert sorted(o["orderId"] for o in owner["items"]) == sorted(
        [str(world.order_id), str(world.fulfilled_order_id)]
    )
    admin = client.get("/orders", headers=world.headers["admin"]).get_json()
    assert str(world.order_id) in [o["orderId"] for o in admin["items"]]


def test_filtering_by_another_users_id_is_404_for_a_customer(app, client):
    world = matrix.build_world(app)
    response = client.get(
        "/orders", query_string={"userId": str(world.owner_id)}, headers=world.headers["other"]
    )
    assert response.status_code == 404
    admin = client.get(
        "/orders", query_string={"userId": str(world.owner_id)}, headers=world.headers["admin"]
    )
    assert sorted(o["orderId"] for o in admin.get_json()["items"]) == sorted(
        [str(world.order_id), str(world.fulfilled_order_id)]
    )


def test_checking_out_another_users_cart_with_ones_own_user_id_is_404_and_changes_nothing(app, client):
    from flask_jwt_extended import decode_token

    world = matrix.build_world(app)
    other_headers = world.headers["other"]
    with app.test_request_context():
        other_user = decode_token(other_headers["Authorization"].split()[1])["sub"]
    response = client.post(
        "/orders", json={"userId": other_user, "cartId": str(world.cart_id)}, headers=other_headers
    )
    assert response.status_code == 404
    cart = client.get(f"/cart/{world.owner_id}", headers=world.headers["owner"]).get_json()
    assert len(cart["cartItems"]) == 1
    assert client.get("/orders", headers=other_headers).get_json()["totalItems"] == 0


def test_another_users_notifications_and_payment_are_404_not_403(app, client):
    world = matrix.build_world(app)
    for path in (f"/users/{world.owner_id}/notifications", f"/orders/{world.order_id}/payment"):
        response = client.get(path, headers=world.headers["other"])
        assert response.status_code == 404, path
        assert str(world.owner_id) not in response.get_data(as_text=True)
