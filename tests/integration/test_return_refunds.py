"""SPEC §5.2 against real Postgres and the payment sandbox: receiving a return refunds its units at the
price paid through the one refund path, and the return is REFUNDED when the gateway confirms."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from app.adapters.gateway import StripeGateway
from app.domain import payments as pay
from app.domain.outbox import OutboxMessage
from app.domain.payments import Refund
from app.domain.returns import Return
from app.extensions import db
from app.services.dispatch import handle_message
from app.services.handlers import EVENT_HANDLERS
from tests.integration.test_payment_services import charge, payment_of
from tests.integration.test_refunds import send
from tests.sandbox import API_KEY, Sandbox, sandbox_fixture  # noqa: F401
from tests.shop import make_product, place_order_directly


@pytest.fixture
def gateway(sandbox: Sandbox) -> StripeGateway:
    return StripeGateway(API_KEY, sandbox.url, timeout=5)


def outbox(event_type: str) -> list[OutboxMessage]:
    db.session.rollback()
    stmt = select(OutboxMessage).where(OutboxMessage.event_type == event_type).order_by(OutboxMessage.id)
    return list(db.session.scalars(stmt))


def the_return(return_id: str) -> Return:
    db.session.rollback()
    found = db.session.get(Return, uuid.UUID(return_id), populate_existing=True)
    assert found is not None
    return found


def test_a_received_return_is_refunded_at_the_price_paid_and_becomes_refunded(
    app_ctx: Any, client: Any, customer: Any, admin: Any, token_for: Any, gateway: StripeGateway
) -> None:
    product = make_product(db.session, price="12.50", stock=10)
    order = place_order_directly(db.session, customer.id, {product.id: 3})  # 37.50
    order_id, payment_id = order.id, order.payment.id
    charge(payment_id, gateway)
    auth, as_admin = token_for(customer), token_for(admin)
    shipments = f"/orders/{order_id}/shipments"
    shipment = client.post(
        shipments, json={"carrier": "UPS", "trackingNumber": "1Z"}, headers=as_admin
    ).get_json()
    client.put(f"{shipments}/{shipment['shipmentId']}", json={"status": "DELIVERED"}, headers=as_admin)
    returns = f"/orders/{order_id}/returns"
    body = {"items": [{"productId": str(product.id), "quantity": 2}], "reason": "DAMAGED"}
    ret = client.post(returns, json=body, headers=auth).get_json()
    assert ret["refundAmount"] == 25.0

    received = client.put(f"{returns}/{ret['returnId']}", json={"status": "RECEIVED"}, headers=as_admin)
    assert received.status_code == 200 and received.get_json()["status"] == "RECEIVED"
    (refund,) = db.session.scalars(select(Refund).where(Refund.payment_id == payment_id))
    assert (refund.amount, refund.status, refund.reason) == (
        Decimal("25.00"),
        pay.R_PENDING,
        f"return {ret['returnId']}",
    )
    assert the_return(ret["returnId"]).refund_id == refund.id
    # receiving again starts no second refund
    client.put(f"{returns}/{ret['returnId']}", json={"status": "RECEIVED"}, headers=as_admin)
    db.session.rollback()
    assert len(db.session.scalars(select(Refund).where(Refund.payment_id == payment_id)).all()) == 1

    send(payment_id, refund.id, gateway)  # the worker sends it; the sandbox says succeeded
    payment = payment_of(payment_id)
    assert (payment.status, payment.refunded_amount) == (pay.PARTIALLY_REFUNDED, Decimal("25.00"))
    (succeeded,) = outbox("RefundSucceeded")
    assert handle_message(succeeded.id, EVENT_HANDLERS) is True
    assert the_return(ret["returnId"]).status == "REFUNDED"
    assert [m.payload["return_id"] for m in outbox("ReturnRefunded")] == [ret["returnId"]]
    listed = client.get(returns, headers=auth).get_json()["items"]
    assert listed[0]["status"] == "REFUNDED"
    order_body = client.get(f"/orders/{order_id}", headers=auth).get_json()
    assert order_body["status"] == "DELIVERED" and order_body["orderItems"][0]["quantityReturned"] == 2
