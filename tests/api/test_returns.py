"""SPEC §5.2 (returns): request within the window, list, receive (restock via the ledger) or reject."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from app.domain.catalogue import Product, StockMovement
from app.domain.fulfilment import Shipment
from app.domain.outbox import OutboxMessage
from app.domain.payments import Payment
from app.extensions import db
from app.services.features import feature_cache
from tests.api.test_conventions import assert_problem
from tests.api.test_orders import place, set_payment
from tests.shop import make_product


@pytest.fixture
def auth(customer, token_for):
    return token_for(customer)


@pytest.fixture
def as_admin(admin, token_for):
    return token_for(admin)


@pytest.fixture
def products(app_ctx):
    return (
        make_product(db.session, price="19.99", stock=10, name="Kettle").id,
        make_product(db.session, price="0.10", stock=10, name="Pin").id,
    )


@pytest.fixture
def delivered(client, customer, auth, as_admin, products):
    """An order of 2 kettles and 5 pins: 1 kettle + 5 pins delivered, 1 kettle shipped (not delivered)."""
    kettle, pin = products
    order = place(client, customer, auth, {kettle: 2, pin: 5})
    set_payment(order, "COMPLETED")
    charged(order)
    url = f"/orders/{order['orderId']}/shipments"
    first = client.post(
        url,
        json={
            "items": [{"productId": str(kettle), "quantity": 1}, {"productId": str(pin), "quantity": 5}],
            "carrier": "UPS",
            "trackingNumber": "1",
        },
        headers=as_admin,
    ).get_json()
    client.post(url, json={"carrier": "UPS", "trackingNumber": "2"}, headers=as_admin)
    client.put(f"{url}/{first['shipmentId']}", json={"status": "DELIVERED"}, headers=as_admin)
    return order


def charged(order):
    """A COMPLETED payment was charged at the gateway: it has the gateway's reference."""
    payment = db.session.get(Payment, uuid.UUID(order["payment"]["paymentId"]))
    payment.gateway_reference = f"pi_{uuid.uuid4().hex[:12]}"
    db.session.commit()


def ask(client, order, headers, lines, reason="DAMAGED", **extra):
    body = {
        "items": [{"productId": str(p), "quantity": q} for p, q in lines.items()],
        "reason": reason,
        **extra,
    }
    return client.post(f"/orders/{order['orderId']}/returns", json=body, headers=headers)


def decide(client, order, ret, headers, status, **extra):
    return client.put(
        f"/orders/{order['orderId']}/returns/{ret['returnId']}",
        json={"status": status, **extra},
        headers=headers,
    )


def stock(product_id):
    db.session.expire_all()
    return db.session.get(Product, product_id).stock


def test_the_owner_returns_delivered_units_refunded_at_the_price_paid(client, delivered, products, auth):
    kettle, pin = products
    response = ask(client, delivered, auth, {kettle: 1, pin: 3}, note="dented")
    assert response.status_code == 201, response.get_json()
    ret = response.get_json()
    assert response.headers["Location"].endswith(f"/orders/{delivered['orderId']}/returns/{ret['returnId']}")
    assert ret["items"] == sorted(
        [
            {"productId": str(kettle), "quantity": 1, "refundAmount": 19.99},
            {"productId": str(pin), "quantity": 3, "refundAmount": 0.3},
        ],
        key=lambda i: i["productId"],
    )
    assert (ret["status"], ret["refundAmount"], ret["reason"], ret["note"]) == (
        "REQUESTED",
        20.29,
        "DAMAGED",
        "dented",
    )
    assert (ret["restocked"], ret["receivedAt"]) == (None, None)
    listed = client.get(f"/orders/{delivered['orderId']}/returns", headers=auth).get_json()["items"]
    assert listed == [ret]
    assert client.get(response.headers["Location"], headers=auth).get_json() == ret


def test_more_than_delivered_is_409_listing_what_is_returnable(client, delivered, products, auth):
    kettle, _ = products
    body = assert_problem(ask(client, delivered, auth, {kettle: 2}), 409)  # 1 of 2 delivered
    assert body["errors"] == [{"productId": str(kettle), "requested": 2, "returnable": 1}]


def test_units_held_by_a_pending_return_cannot_be_asked_for_again_until_rejected(
    client, delivered, products, auth, as_admin
):
    kettle, _ = products
    first = ask(client, delivered, auth, {kettle: 1}).get_json()
    assert_problem(ask(client, delivered, auth, {kettle: 1}), 409)
    assert decide(client, delivered, first, as_admin, "REJECTED").get_json()["status"] == "REJECTED"
    assert ask(client, delivered, auth, {kettle: 1}).status_code == 201


def test_outside_the_window_is_409(client, delivered, products, auth):
    db.session.execute(
        update(Shipment)
        .where(Shipment.order_id == uuid.UUID(delivered["orderId"]), Shipment.delivered_at.is_not(None))
        .values(delivered_at=func.now() - timedelta(days=31))
    )
    db.session.commit()
    body = assert_problem(ask(client, delivered, auth, {products[1]: 1}), 409)
    assert "window" in body["detail"]


def test_a_window_of_zero_accepts_no_returns(app, client, delivered, products, auth, monkeypatch):
    monkeypatch.setitem(app.config, "RETURN_WINDOW_DAYS", 0)
    assert_problem(ask(client, delivered, auth, {products[1]: 1}), 409)


def test_an_order_not_delivered_has_nothing_returnable(client, customer, auth, products):
    order = place(client, customer, auth, {products[0]: 1})
    body = assert_problem(ask(client, order, auth, {products[0]: 1}), 409)
    assert body["errors"] == [{"productId": str(products[0]), "requested": 1, "returnable": 0}]


def test_receiving_restocks_through_the_ledger_and_counts_the_returned_units(
    client, delivered, products, auth, as_admin
):
    kettle, pin = products
    before = (stock(kettle), stock(pin))
    ret = ask(client, delivered, auth, {kettle: 1, pin: 2}).get_json()
    received = decide(client, delivered, ret, as_admin, "RECEIVED")
    assert received.status_code == 200, received.get_json()
    body = received.get_json()
    assert (body["status"], body["restocked"]) == ("RECEIVED", True) and body["receivedAt"]
    assert (stock(kettle), stock(pin)) == (before[0] + 1, before[1] + 2)
    movements = db.session.execute(
        select(StockMovement.product_id, StockMovement.delta).where(StockMovement.reason == "RETURN")
    ).all()
    assert sorted(movements) == sorted([(kettle, 1), (pin, 2)])
    order = client.get(f"/orders/{delivered['orderId']}", headers=auth).get_json()
    assert {i["productId"]: i["quantityReturned"] for i in order["orderItems"]} == {
        str(kettle): 1,
        str(pin): 2,
    }
    # again: nothing changes; the other decisions are conflicts
    assert decide(client, delivered, ret, as_admin, "RECEIVED").status_code == 200
    assert stock(kettle) == before[0] + 1
    assert_problem(decide(client, delivered, ret, as_admin, "REJECTED"), 409)
    names = [
        m
        for m in db.session.scalars(select(OutboxMessage.event_type).order_by(OutboxMessage.id))
        if m.startswith("Return")
    ]
    assert names == ["ReturnRequested", "ReturnReceived"]


def test_receiving_without_restock_leaves_the_stock(client, delivered, products, auth, as_admin):
    kettle, _ = products
    before = stock(kettle)
    ret = ask(client, delivered, auth, {kettle: 1}).get_json()
    body = decide(client, delivered, ret, as_admin, "RECEIVED", restock=False).get_json()
    assert (body["status"], body["restocked"]) == ("RECEIVED", False)
    assert stock(kettle) == before


def test_a_rejected_return_cannot_be_received(client, delivered, products, auth, as_admin):
    ret = ask(client, delivered, auth, {products[1]: 1}).get_json()
    decide(client, delivered, ret, as_admin, "REJECTED")
    assert_problem(decide(client, delivered, ret, as_admin, "RECEIVED"), 409)


def test_a_customer_may_not_decide_and_another_customer_sees_nothing(
    client, delivered, products, auth, make_user, token_for
):
    ret = ask(client, delivered, auth, {products[1]: 1}).get_json()
    assert_problem(decide(client, delivered, ret, auth, "RECEIVED"), 403)
    stranger = token_for(make_user())
    assert_problem(ask(client, delivered, stranger, {products[1]: 1}), 404)
    assert_problem(client.get(f"/orders/{delivered['orderId']}/returns", headers=stranger), 404)
    assert_problem(
        client.get(f"/orders/{delivered['orderId']}/returns/{ret['returnId']}", headers=stranger), 404
    )


def test_an_admin_may_ask_on_the_customers_behalf(client, delivered, products, as_admin):
    assert ask(client, delivered, as_admin, {products[1]: 1}).status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {"items": [], "reason": "DAMAGED"},
        {"items": [{"productId": "x", "quantity": 1}], "reason": "DAMAGED"},
        {"items": [{"productId": str(uuid.uuid4()), "quantity": 0}], "reason": "DAMAGED"},
        {"items": [{"productId": str(uuid.uuid4()), "quantity": 1}], "reason": "BORED"},
        {"items": [{"productId": str(uuid.uuid4()), "quantity": 1}]},
        {"items": [{"productId": str(uuid.uuid4()), "quantity": 1}], "reason": "OTHER", "status": "RECEIVED"},
    ],
)
def test_bad_bodies_are_422(client, delivered, auth, body):
    assert_problem(client.post(f"/orders/{delivered['orderId']}/returns", json=body, headers=auth), 422)


def test_a_product_not_in_the_order_is_422(client, delivered, auth):
    assert_problem(ask(client, delivered, auth, {uuid.uuid4(): 1}), 422)


@pytest.mark.parametrize("body", [{"status": "REFUNDED"}, {"status": "RECEIVED", "restock": "maybe"}, {}])
def test_bad_decisions_are_422(client, delivered, products, auth, as_admin, body):
    ret = ask(client, delivered, auth, {products[1]: 1}).get_json()
    url = f"/orders/{delivered['orderId']}/returns/{ret['returnId']}"
    assert_problem(client.put(url, json=body, headers=as_admin), 422)


def test_a_return_request_is_idempotent(client, delivered, products, auth):
    headers = {**auth, "Idempotency-Key": "return-1"}
    first = ask(client, delivered, headers, {products[1]: 2})
    again = ask(client, delivered, headers, {products[1]: 2})
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true" and again.get_json() == first.get_json()
    assert len(client.get(f"/orders/{delivered['orderId']}/returns", headers=auth).get_json()["items"]) == 1


def test_the_returns_toggle_off_answers_503(client, delivered, products, auth, as_admin):
    assert client.put("/admin/features/returns", json={"enabled": False}, headers=as_admin).status_code == 200
    feature_cache.invalidate()
    try:
        body = assert_problem(ask(client, delivered, auth, {products[1]: 1}), 503)
        assert body["type"].endswith("feature-disabled")
        assert_problem(client.get(f"/orders/{delivered['orderId']}/returns", headers=auth), 503)
    finally:
        client.put("/admin/features/returns", json={"enabled": True}, headers=as_admin)
        feature_cache.invalidate()
