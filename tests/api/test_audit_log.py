"""SPEC §5.8: the audit log records each admin action in the change's transaction; GET /admin/audit-log."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError

from app.domain.audit import AuditEntry
from app.domain.payments import COMPLETED, Payment
from app.extensions import db
from tests.shop import make_product, place_order_directly


@pytest.fixture
def as_admin(admin: Any, token_for: Any) -> dict[str, str]:
    return token_for(admin)


def entries(client: FlaskClient, headers: dict[str, str], **query: Any) -> dict[str, Any]:
    response = client.get("/admin/audit-log", query_string=query, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def only_entry(client: FlaskClient, headers: dict[str, str], **query: Any) -> dict[str, Any]:
    items = entries(client, headers, **query)["items"]
    assert len(items) == 1, items
    return items[0]


def test_a_product_creation_is_recorded_with_every_field_and_the_request_id(
    client: FlaskClient, admin: Any, as_admin: dict[str, str]
) -> None:
    body = {"productName": "Mug", "description": "Blue", "price": 12.5, "stock": 7}
    response = client.post("/products", json=body, headers={**as_admin, "X-Request-ID": "req-audit-1"})
    assert response.status_code == 201
    entry = only_entry(client, as_admin, action="PRODUCT_CREATED")
    assert entry["actorId"] == str(admin.id) and entry["actorRole"] == "admin"
    assert entry["resourceType"] == "PRODUCT" and entry["resourceId"] == response.json["productId"]
    assert entry["requestId"] == "req-audit-1"
    assert entry["changes"] == {
        "productName": {"old": None, "new": "Mug"},
        "description": {"old": None, "new": "Blue"},
        "price": {"old": None, "new": 12.5},
        "stock": {"old": None, "new": 7},
    }
    assert {"auditId", "at"} <= set(entry)


def test_a_product_update_records_only_the_fields_that_changed(
    client: FlaskClient, as_admin: dict[str, str]
) -> None:
    created = client.post(
        "/products", json={"productName": "Mug", "description": "", "price": 5, "stock": 0}, headers=as_admin
    ).json
    response = client.patch(
        f"/products/{created['productId']}", json={"price": 6.25, "productName": "Mug"}, headers=as_admin
    )
    assert response.status_code == 200
    entry = only_entry(client, as_admin, action="PRODUCT_UPDATED")
    assert entry["changes"] == {"price": {"old": 5, "new": 6.25}}


def test_a_stock_movement_records_the_stock_before_and_after(
    client: FlaskClient, as_admin: dict[str, str]
) -> None:
    created = client.post(
        "/products", json={"productName": "Mug", "description": "", "price": 5, "stock": 3}, headers=as_admin
    ).json
    response = client.post(
        f"/products/{created['productId']}/stock-movements",
        json={"delta": 4, "reason": "RESTOCK"},
        headers=as_admin,
    )
    assert response.status_code == 201
    entry = only_entry(client, as_admin, action="STOCK_MOVEMENT_RECORDED")
    assert entry["resourceId"] == created["productId"]
    assert entry["changes"] == {"stock": {"old": 3, "new": 7}}


def test_a_refused_change_records_nothing(client: FlaskClient, as_admin: dict[str, str]) -> None:
    created = client.post(
        "/products", json={"productName": "Mug", "description": "", "price": 5, "stock": 1}, headers=as_admin
    ).json
    response = client.post(
        f"/products/{created['productId']}/stock-movements",
        json={"delta": -5, "reason": "ADJUSTMENT"},
        headers=as_admin,
    )
    assert response.status_code == 409
    assert entries(client, as_admin, action="STOCK_MOVEMENT_RECORDED")["totalItems"] == 0


def test_a_feature_toggle_change_is_recorded(client: FlaskClient, as_admin: dict[str, str]) -> None:
    response = client.put(
        "/admin/features/checkout", json={"enabled": False, "rolloutPercent": 40}, headers=as_admin
    )
    assert response.status_code == 200
    entry = only_entry(client, as_admin, resourceType="FEATURE")
    assert entry["action"] == "FEATURE_CHANGED" and entry["resourceId"] == "checkout"
    assert entry["changes"] == {
        "enabled": {"old": True, "new": False},
        "rolloutPercent": {"old": 100, "new": 40},
    }
    # Setting the same values again changes nothing and records nothing.
    client.put("/admin/features/checkout", json={"enabled": False}, headers=as_admin)
    assert entries(client, as_admin, resourceType="FEATURE")["totalItems"] == 1


def test_a_refund_is_recorded(
    client: FlaskClient, app_ctx: Any, customer: Any, as_admin: dict[str, str]
) -> None:
    product = make_product(db.session, price="4.25", stock=5)
    order = place_order_directly(db.session, customer.id, {product.id: 2})
    db.session.execute(
        update(Payment)
        .where(Payment.id == order.payment.id)
        .values(status=COMPLETED, gateway_reference="pi_audited")
    )
    db.session.commit()
    refund = {"amount": 3.5, "reason": "scratched"}
    assert client.post(f"/orders/{order.id}/refund", json=refund, headers=as_admin).status_code == 202
    entry = only_entry(client, as_admin, action="REFUND_REQUESTED")
    assert entry["resourceType"] == "PAYMENT" and entry["resourceId"] == str(order.payment.id)
    assert set(entry["changes"]) == {"refundId", "amount", "reason"}
    assert entry["changes"]["amount"] == {"old": None, "new": 3.5}
    assert entry["changes"]["reason"] == {"old": None, "new": "scratched"}


def test_an_admin_status_change_is_recorded_and_a_customer_one_is_not(
    client: FlaskClient, app_ctx: Any, customer: Any, token_for: Any, as_admin: dict[str, str]
) -> None:
    product = make_product(db.session, stock=5)
    by_admin = place_order_directly(db.session, customer.id, {product.id: 1})
    by_customer = place_order_directly(db.session, customer.id, {product.id: 1})
    assert (
        client.put(f"/orders/{by_admin.id}", json={"status": "CANCELLED"}, headers=as_admin).status_code
        == 200
    )
    response = client.put(
        f"/orders/{by_customer.id}", json={"status": "CANCELLED"}, headers=token_for(customer)
    )
    assert response.status_code == 200
    entry = only_entry(client, as_admin, resourceType="ORDER")
    assert entry["action"] == "ORDER_STATUS_CHANGED" and entry["resourceId"] == str(by_admin.id)
    assert entry["changes"] == {"status": {"old": "PLACED", "new": "CANCELLED"}}


def test_an_erasure_is_recorded_without_personal_data(
    client: FlaskClient, customer: Any, admin: Any, as_admin: dict[str, str]
) -> None:
    assert client.delete(f"/users/{customer.id}", headers=as_admin).status_code == 204
    entry = only_entry(client, as_admin, action="USER_ERASED")
    assert entry["resourceId"] == str(customer.id) and entry["actorId"] == str(admin.id)
    assert list(entry["changes"]) == ["erasedAt"]
    assert customer.email not in str(entry)


def test_the_log_is_newest_first_filtered_and_paginated(
    client: FlaskClient, admin: Any, make_user: Any, token_for: Any, as_admin: dict[str, str]
) -> None:
    other_admin = make_user("admin")
    ids = []
    for i in range(3):
        body = {"productName": f"P{i}", "description": "", "price": 1, "stock": 0}
        ids.append(client.post("/products", json=body, headers=as_admin).json["productId"])
    client.post(
        "/products",
        json={"productName": "X", "description": "", "price": 1, "stock": 0},
        headers=token_for(other_admin),
    )
    page = entries(client, as_admin, actorId=str(admin.id), pageSize=2)
    assert page["totalItems"] == 3 and page["totalPages"] == 2 and page["pageSize"] == 2
    assert [e["resourceId"] for e in page["items"]] == [ids[2], ids[1]]
    assert [
        e["resourceId"] for e in entries(client, as_admin, actorId=str(admin.id), page=2, pageSize=2)["items"]
    ] == [ids[0]]
    assert entries(client, as_admin, resourceType="PRODUCT", resourceId=ids[1])["totalItems"] == 1
    assert entries(client, as_admin)["totalItems"] == 4


@pytest.mark.parametrize(
    "query",
    [{"action": "NOPE"}, {"resourceType": "product"}, {"actorId": "x"}, {"pageSize": 0}, {"page": 0}],
)
def test_bad_filters_are_422(client: FlaskClient, as_admin: dict[str, str], query: dict[str, Any]) -> None:
    response = client.get("/admin/audit-log", query_string=query, headers=as_admin)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"


def test_customers_may_not_read_the_log(client: FlaskClient, customer: Any, token_for: Any) -> None:
    assert client.get("/admin/audit-log", headers=token_for(customer)).status_code == 403
    assert client.get("/admin/audit-log").status_code == 401


@pytest.mark.parametrize("statement", ["UPDATE audit_log SET action = 'X'", "DELETE FROM audit_log"])
def test_the_database_refuses_to_alter_entries(
    client: FlaskClient, app_ctx: Any, as_admin: dict[str, str], statement: str
) -> None:
    client.post(
        "/products", json={"productName": "P", "description": "", "price": 1, "stock": 0}, headers=as_admin
    )
    with pytest.raises(DBAPIError, match="append-only"):
        db.session.execute(text(statement))
    db.session.rollback()
    assert len(db.session.scalars(select(AuditEntry)).all()) == 1


def test_the_audit_call_commits_with_the_change_or_not_at_all(app_ctx: Any, admin: Any) -> None:
    from app.domain.actors import Actor
    from app.services.unit_of_work import UnitOfWork

    actor = Actor(admin.id, "admin")
    with UnitOfWork() as uow:
        uow.audit(actor, "PRODUCT_UPDATED", "PRODUCT", uuid.uuid4(), {"price": {"old": 1, "new": 2}})
        # no commit: the unit of work rolls back
    assert db.session.scalars(select(AuditEntry)).all() == []
