"""GET /orders/{orderId}/payment and POST /orders/{orderId}/refund."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update

from app.domain.outbox import OutboxMessage
from app.domain.payments import COMPLETED, Payment, Refund
from app.extensions import db
from tests.shop import make_product, place_order_directly


@pytest.fixture
def order(app_ctx: Any, customer: Any) -> tuple[uuid.UUID, uuid.UUID]:
    """A PLACED order of the customer: (order id, payment id)."""
    product = make_product(db.session, price="4.25", stock=5)
    placed = place_order_directly(db.session, customer.id, {product.id: 2})
    return placed.id, placed.payment.id


def complete(payment_id: uuid.UUID) -> None:
    db.session.execute(
        update(Payment)
        .where(Payment.id == payment_id)
        .values(status=COMPLETED, gateway_reference="pi_test", attempts=1)
    )
    db.session.commit()


def test_the_owner_reads_the_payment_of_an_order(
    client: FlaskClient, order: Any, customer: Any, token_for: Any
) -> None:
    order_id, payment_id = order
    response = client.get(f"/orders/{order_id}/payment", headers=token_for(customer))
    assert response.status_code == 200
    assert response.json == {
        "paymentId": str(payment_id),
        "orderId": str(order_id),
        "amount": 8.5,
        "currency": "USD",
        "status": "PENDING",
        "method": "CREDIT_CARD",
        "gatewayReference": None,
        "refundReference": None,
        "failureReason": None,
        "attempts": 0,
        "refundedAmount": 0.0,
        "refunds": [],
    }


def test_an_admin_reads_any_payment(client: FlaskClient, order: Any, admin: Any, token_for: Any) -> None:
    response = client.get(f"/orders/{order[0]}/payment", headers=token_for(admin))
    assert response.status_code == 200 and response.json["paymentId"] == str(order[1])


def test_another_customer_gets_404(client: FlaskClient, order: Any, make_user: Any, token_for: Any) -> None:
    response = client.get(f"/orders/{order[0]}/payment", headers=token_for(make_user("customer")))
    assert response.status_code == 404
    assert response.content_type == "application/problem+json"


def test_an_unknown_order_is_404(client: FlaskClient, customer: Any, token_for: Any) -> None:
    assert client.get(f"/orders/{uuid.uuid4()}/payment", headers=token_for(customer)).status_code == 404
    assert client.get("/orders/not-a-uuid/payment", headers=token_for(customer)).status_code == 404


def test_reading_a_payment_needs_a_token(client: FlaskClient, order: Any) -> None:
    assert client.get(f"/orders/{order[0]}/payment").status_code == 401


def test_an_admin_refund_of_a_completed_payment_is_accepted_and_queued(
    client: FlaskClient, order: Any, admin: Any, token_for: Any
) -> None:
    order_id, payment_id = order
    complete(payment_id)
    response = client.post(f"/orders/{order_id}/refund", headers=token_for(admin))
    assert response.status_code == 202
    assert response.json["paymentId"] == str(payment_id) and response.json["status"] == "COMPLETED"
    db.session.rollback()
    queued = db.session.scalars(select(OutboxMessage.event_type).order_by(OutboxMessage.id.desc())).first()
    assert queued == "RefundRequested"


def test_refunding_a_payment_that_is_not_completed_is_409(
    client: FlaskClient, order: Any, admin: Any, token_for: Any
) -> None:
    response = client.post(f"/orders/{order[0]}/refund", headers=token_for(admin))
    assert response.status_code == 409
    assert response.json["status"] == 409


def test_a_customer_cannot_refund_even_their_own_order(
    client: FlaskClient, order: Any, customer: Any, token_for: Any
) -> None:
    complete(order[1])
    assert client.post(f"/orders/{order[0]}/refund", headers=token_for(customer)).status_code == 403


def test_refunding_an_unknown_order_is_404(client: FlaskClient, admin: Any, token_for: Any) -> None:
    assert client.post(f"/orders/{uuid.uuid4()}/refund", headers=token_for(admin)).status_code == 404


def refund_rows(payment_id: uuid.UUID) -> list[Refund]:
    db.session.rollback()
    return list(db.session.scalars(select(Refund).where(Refund.payment_id == payment_id)))


def test_a_partial_refund_is_a_pending_entry_and_queued_with_its_id(
    client: FlaskClient, order: Any, admin: Any, token_for: Any
) -> None:
    order_id, payment_id = order
    complete(payment_id)
    response = client.post(
        f"/orders/{order_id}/refund",
        json={"amount": 3.25, "reason": "scratched box"},
        headers=token_for(admin),
    )
    assert response.status_code == 202, response.json
    body = response.json
    assert body["status"] == "COMPLETED" and body["refundedAmount"] == 0.0
    [entry] = body["refunds"]
    assert entry["amount"] == 3.25 and entry["status"] == "PENDING" and entry["reason"] == "scratched box"
    assert entry["failureReason"] is None and entry["gatewayReference"] is None
    db.session.rollback()
    message = db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id.desc())).first()
    assert message is not None and message.event_type == "RefundRequested"
    assert message.payload["refund_id"] == entry["refundId"]
    # The rest (8.50 - 3.25) is what is still refundable: the default amount.
    rest = client.post(f"/orders/{order_id}/refund", headers=token_for(admin))
    assert rest.status_code == 202
    assert [r["amount"] for r in rest.json["refunds"]] == [3.25, 5.25]


def test_more_than_is_still_refundable_is_409_and_changes_nothing(
    client: FlaskClient, order: Any, admin: Any, token_for: Any
) -> None:
    order_id, payment_id = order
    complete(payment_id)
    assert (
        client.post(f"/orders/{order_id}/refund", json={"amount": 8.0}, headers=token_for(admin)).status_code
        == 202
    )
    response = client.post(f"/orders/{order_id}/refund", json={"amount": 0.51}, headers=token_for(admin))
    assert response.status_code == 409 and response.content_type == "application/problem+json"
    assert [r.amount for r in refund_rows(payment_id)] == [8]


@pytest.mark.parametrize(
    "body",
    [{"amount": 0}, {"amount": -1}, {"amount": 1.001}, {"amount": "x"}, {"amount": True}, {"other": 1}],
)
def test_an_amount_that_is_not_positive_money_is_422_and_changes_nothing(
    client: FlaskClient, order: Any, admin: Any, token_for: Any, body: dict[str, Any]
) -> None:
    order_id, payment_id = order
    complete(payment_id)
    response = client.post(f"/orders/{order_id}/refund", json=body, headers=token_for(admin))
    assert response.status_code == 422 and response.content_type == "application/problem+json"
    assert refund_rows(payment_id) == []


def test_a_repeated_refund_with_the_same_key_is_replayed_not_refunded_twice(
    client: FlaskClient, order: Any, admin: Any, token_for: Any
) -> None:
    order_id, payment_id = order
    complete(payment_id)
    headers = {**token_for(admin), "Idempotency-Key": "refund-once"}
    first = client.post(f"/orders/{order_id}/refund", json={"amount": 2}, headers=headers)
    again = client.post(f"/orders/{order_id}/refund", json={"amount": 2}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.headers.get("Idempotent-Replayed") == "true" and again.json == first.json
    assert len(refund_rows(payment_id)) == 1
    other = client.post(f"/orders/{order_id}/refund", json={"amount": 3}, headers=headers)
    assert other.status_code == 422
