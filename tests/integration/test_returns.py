"""SPEC §5.2 against real Postgres: returns restock through the ledger (reconciliation finds nothing to
correct), and concurrent return requests never return more units than were delivered."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from app.adapters import queue
from app.domain.catalogue import Product, StockMovement
from app.domain.returns import Return, ReturnItem
from app.extensions import db
from tests.integration.test_order_concurrency import THREADS, race
from tests.integration.test_reconciliation import reconcile
from tests.shop import make_product, place_order_directly


@pytest.fixture(autouse=True)
def _queue_breaker_closed():
    queue.publish_breaker.close()
    yield
    queue.publish_breaker.close()


@pytest.fixture
def delivered_order(app, app_ctx, client, customer, admin, token_for):
    """A paid order of ``quantity`` units of one product, shipped and delivered through the API."""
    as_admin = token_for(admin)

    def _make(quantity: int, stock: int = 20):
        product = make_product(db.session, price="12.50", stock=stock)
        order = place_order_directly(db.session, customer.id, {product.id: quantity})
        db.session.refresh(order)
        order.payment.status = "COMPLETED"
        order.payment.gateway_reference = f"pi_{uuid.uuid4().hex[:12]}"  # charged at the gateway
        db.session.commit()
        url = f"/orders/{order.id}/shipments"
        shipment = client.post(
            url, json={"carrier": "UPS", "trackingNumber": "1"}, headers=as_admin
        ).get_json()
        client.put(f"{url}/{shipment['shipmentId']}", json={"status": "DELIVERED"}, headers=as_admin)
        return order.id, product.id

    return _make


def ledger_and_stock(product_id: uuid.UUID) -> tuple[int, int]:
    db.session.expire_all()
    stock = db.session.scalar(select(Product.stock).where(Product.id == product_id))
    ledger = db.session.scalar(
        select(func.coalesce(func.sum(StockMovement.delta), 0)).where(StockMovement.product_id == product_id)
    )
    return int(stock), int(ledger)


def test_received_returns_restock_through_the_ledger_and_reconciliation_stays_clean(
    client, delivered_order, customer, admin, token_for
):
    order_id, product_id = delivered_order(4, stock=10)  # stock 6 after the order
    auth, as_admin = token_for(customer), token_for(admin)
    url = f"/orders/{order_id}/returns"
    line = {"items": [{"productId": str(product_id), "quantity": 3}], "reason": "NO_LONGER_NEEDED"}
    ret = client.post(url, json=line, headers=auth).get_json()
    response = client.put(f"{url}/{ret['returnId']}", json={"status": "RECEIVED"}, headers=as_admin)
    assert response.status_code == 200, response.get_json()
    assert ledger_and_stock(product_id) == (9, 9)
    run = reconcile()
    assert run is not None and run.discrepancies == []
    assert ledger_and_stock(product_id) == (9, 9)


def test_concurrent_return_requests_never_return_more_than_delivered(
    app, client, delivered_order, customer, token_for
):
    order_id, product_id = delivered_order(3)
    auth = token_for(customer)
    body = {"items": [{"productId": str(product_id), "quantity": 1}], "reason": "OTHER"}
    calls = [
        (lambda c: c.post(f"/orders/{order_id}/returns", json=body, headers=auth)) for _ in range(THREADS)
    ]
    responses = race(app, calls)
    assert sorted(r.status_code for r in responses) == [201] * 3 + [409] * (THREADS - 3), [
        r.get_json() for r in responses
    ]
    db.session.expire_all()
    held = db.session.scalar(
        select(func.sum(ReturnItem.quantity))
        .join(Return, Return.id == ReturnItem.return_id)
        .where(Return.order_id == order_id)
    )
    assert held == 3
