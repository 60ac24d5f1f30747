"""SPEC §5.1/§5.2 races against real Postgres with real threads: two admins shipping the same units,
customers returning the same units, never more than was ordered or delivered."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from app.domain.fulfilment import Shipment, ShipmentItem
from app.domain.orders import OrderItem
from app.domain.payments import Payment
from app.extensions import db
from tests.integration.test_order_concurrency import THREADS, race
from tests.shop import make_product, place_order_directly


@pytest.fixture
def paid_order(app, app_ctx, customer):
    def _make(quantity: int):
        product = make_product(db.session, price="3.00", stock=quantity + 5)
        order = place_order_directly(db.session, customer.id, {product.id: quantity})
        payment = db.session.scalar(select(Payment).where(Payment.order_id == order.id))
        payment.status = "COMPLETED"
        db.session.commit()
        return order.id, product.id

    return _make


@pytest.fixture
def admins(make_user, token_for):
    return [token_for(make_user("admin")) for _ in range(THREADS)]


def shipped_units(order_id: uuid.UUID) -> tuple[int, int]:
    """(quantity_shipped of the line, units in shipments): both count what left."""
    db.session.expire_all()
    line = db.session.scalar(select(OrderItem.quantity_shipped).where(OrderItem.order_id == order_id))
    in_shipments = db.session.scalar(
        select(func.coalesce(func.sum(ShipmentItem.quantity), 0))
        .join(Shipment, Shipment.id == ShipmentItem.shipment_id)
        .where(Shipment.order_id == order_id)
    )
    return int(line), int(in_shipments)


def test_admins_shipping_the_same_units_at_once_never_ship_more_than_was_ordered(app, paid_order, admins):
    order_id, product_id = paid_order(3)
    body = {
        "items": [{"productId": str(product_id), "quantity": 2}],
        "carrier": "UPS",
        "trackingNumber": "1Z",
    }
    calls = [
        (lambda client, auth=auth: client.post(f"/orders/{order_id}/shipments", json=body, headers=auth))
        for auth in admins
    ]
    responses = race(app, calls)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * (THREADS - 1), [r.get_json() for r in responses]
    for response in responses:
        if response.status_code == 409:
            assert response.get_json()["errors"] == [
                {"productId": str(product_id), "requested": 2, "remaining": 1}
            ]
    assert shipped_units(order_id) == (2, 2)


def test_admins_shipping_everything_left_at_once_ship_it_once(app, paid_order, admins):
    order_id, _ = paid_order(5)
    body = {"carrier": "UPS", "trackingNumber": "1Z"}
    calls = [
        (lambda client, auth=auth: client.post(f"/orders/{order_id}/shipments", json=body, headers=auth))
        for auth in admins
    ]
    responses = race(app, calls)
    assert sorted(r.status_code for r in responses) == [201] + [409] * (THREADS - 1)
    assert shipped_units(order_id) == (5, 5)
    db.session.expire_all()
    assert (
        db.session.scalar(select(func.count()).select_from(Shipment).where(Shipment.order_id == order_id))
        == 1
    )
