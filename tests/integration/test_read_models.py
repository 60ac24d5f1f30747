"""The hot reads render their Core read models exactly as the ORM entities render: GET /orders/{id}
and GET /products/{id} answer the same bodies as before they left the Session (the schemas are the
contract), whatever state the order is in."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from app.api.orders import ORDER_BODY, OrderSchema
from app.api.products import PRODUCT_BODY, ProductSchema
from app.domain.actors import Actor
from app.extensions import db
from app.services.unit_of_work import ReadOnlyUnitOfWork, Reads
from tests.api.test_orders import place, set_payment
from tests.shop import make_product


@pytest.fixture
def shop(app_ctx, client, make_user, token_for):
    customer, admin = make_user(), make_user("admin")
    return {
        "customer": customer,
        "auth": token_for(customer),
        "admin": Actor(admin.id, "admin"),
        "admin_auth": token_for(admin),
        "owner": Actor(customer.id, "customer"),
        "apple": make_product(db.session, price="2.50", stock=10, name="Apple").id,
        "pear": make_product(db.session, price="1.99", stock=10, name="Pear").id,
    }


def rendered_both_ways(order_id: str, actor: Actor) -> tuple[dict, dict]:
    """The entity as the schema dumps it; the read model as the schema dumps it and as the compiled
    schema (GET /orders/{id}) renders it, which must be the same."""
    key = uuid.UUID(order_id)
    with ReadOnlyUnitOfWork() as uow:
        entity = uow.orders.get(key)
        assert entity is not None
        from_entity = OrderSchema().dump(entity.view_for(actor))
    db.session.remove()
    with Reads() as reads:
        view = reads.orders.get(key)
    assert view is not None
    from_view = OrderSchema().dump(view.view_for(actor))
    assert ORDER_BODY(view) == from_view
    return from_entity, from_view


def assert_same_for_everyone(shop, order_id: str) -> dict:
    for actor in (shop["owner"], shop["admin"]):
        from_entity, from_view = rendered_both_ways(order_id, actor)
        assert from_view == from_entity
    return from_view


def test_a_placed_order_reads_the_same(shop, client):
    order = place(client, shop["customer"], shop["auth"], {shop["apple"]: 2, shop["pear"]: 1})
    body = assert_same_for_everyone(shop, order["orderId"])
    assert [line["productId"] for line in body["orderItems"]] == sorted(
        [str(shop["apple"]), str(shop["pear"])]
    )
    assert body["payment"]["status"] == "PENDING"


def test_a_partly_shipped_and_returned_order_reads_the_same(shop, client):
    order = place(client, shop["customer"], shop["auth"], {shop["apple"]: 2, shop["pear"]: 1})
    set_payment(order, "COMPLETED")
    db.session.execute(
        text("UPDATE payments SET gateway_reference = 'pi_read_models' WHERE order_id = :id"),
        {"id": order["orderId"]},
    )
    db.session.commit()
    shipment = client.post(
        f"/orders/{order['orderId']}/shipments",
        json={
            "items": [{"productId": str(shop["apple"]), "quantity": 2}],
            "carrier": "UPS",
            "trackingNumber": "1Z",
        },
        headers=shop["admin_auth"],
    )
    assert shipment.status_code == 201, shipment.get_json()
    delivered = client.put(
        f"/orders/{order['orderId']}/shipments/{shipment.get_json()['shipmentId']}",
        json={"status": "DELIVERED"},
        headers=shop["admin_auth"],
    )
    assert delivered.status_code == 200, delivered.get_json()
    returned = client.post(
        f"/orders/{order['orderId']}/returns",
        json={"items": [{"productId": str(shop["apple"]), "quantity": 1}], "reason": "OTHER"},
        headers=shop["auth"],
    )
    assert returned.status_code == 201, returned.get_json()
    body = assert_same_for_everyone(shop, order["orderId"])
    assert body["fulfillmentStatus"] == "PARTIALLY_SHIPPED"


def test_a_cancelled_and_deleted_order_reads_the_same(shop, client):
    order = place(client, shop["customer"], shop["auth"], {shop["apple"]: 1})
    assert client.delete(f"/orders/{order['orderId']}", headers=shop["auth"]).status_code == 204
    from_entity, from_view = rendered_both_ways(order["orderId"], shop["admin"])
    assert from_view == from_entity
    assert from_view["cancelReason"] == "CANCELLED_BY_CUSTOMER"


def test_an_order_from_before_release_2_reads_the_same(shop, client):
    order = place(client, shop["customer"], shop["auth"], {shop["pear"]: 3})
    db.session.execute(
        text("UPDATE orders SET shipping_address = NULL WHERE id = :id"), {"id": order["orderId"]}
    )
    db.session.execute(text("DELETE FROM payments WHERE order_id = :id"), {"id": order["orderId"]})
    db.session.commit()
    body = assert_same_for_everyone(shop, order["orderId"])
    assert body["shippingAddress"] is None and body["payment"] is None


def test_a_product_reads_the_same(shop):
    with ReadOnlyUnitOfWork() as uow:
        from_entity = ProductSchema().dump(uow.products.get(shop["apple"]))
    with Reads() as reads:
        view = reads.products.get(shop["apple"])
    assert ProductSchema().dump(view) == from_entity
    assert PRODUCT_BODY(view) == from_entity


def test_reads_leave_the_pool_in_transactional_mode(shop):
    with Reads() as reads:
        reads.products.get(shop["apple"])
    with db.engine.connect() as connection:
        assert connection.get_isolation_level() != "AUTOCOMMIT"
        assert not connection.connection.dbapi_connection.autocommit
