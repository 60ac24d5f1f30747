"""Compiled response schemas render exactly what ``schema.dump`` renders (compared as the JSON
text the response carries, so that 1 and 1.0 or True and 1 would differ)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import marshmallow as ma
import pytest
from flask import Flask

from app.api.orders import ORDER_BODY, OrderSchema
from app.api.products import PRODUCT_BODY, ProductSchema
from app.api.rendering import NotCompilable, compiled
from app.domain.catalogue import ProductView
from app.domain.orders import OrderLineView, OrderPaymentView, OrderView


def as_json(body: dict) -> str:
    return json.dumps(body, sort_keys=True)


def line(n: int, **changes: object) -> OrderLineView:
    values: dict = {
        "product_id": uuid.UUID(int=n),
        "product_name": f"Product {n} — ünïcode",
        "quantity": 3,
        "unit_price": Decimal("19.99"),
        "line_total": Decimal("59.97"),
        "quantity_shipped": 1,
        "quantity_returned": 0,
    }
    values.update(changes)
    return OrderLineView(**values)


def order(**changes: object) -> OrderView:
    values: dict = {
        "id": uuid.UUID(int=1),
        "user_id": uuid.UUID(int=2),
        "status": "PLACED",
        "order_date": datetime(2026, 12, 2, 9, 30, 1, 123456, tzinfo=UTC),
        "total_amount": Decimal("59.97"),
        "currency": "USD",
        "version": 4,
        "cancel_reason": None,
        "deleted_at": None,
        "payment_due_by": None,
        "shipping_address": {
            "line1": "1 Main St",
            "city": "Springfield",
            "postalCode": "12345",
            "country": "US",
        },
        "items": [line(5), line(7)],
        "payment": OrderPaymentView(uuid.UUID(int=3), "COMPLETED", "CREDIT_CARD", Decimal("59.97")),
        "allowed_transitions": ["SHIPPED", "CANCELLED"],
    }
    values.update(changes)
    return OrderView(**values)


ORDERS = {
    "placed": order(),
    "no payment, no address (before release 2)": order(payment=None, shipping_address=None),
    "address with line2": order(
        shipping_address={
            "line1": "9 Harbour Rd",
            "line2": "Flat 2",
            "city": "Portsmouth",
            "postalCode": "PO1 2AB",
            "country": "GB",
        }
    ),
    "cancelled, due, no transitions read": order(
        status="CANCELLED",
        cancel_reason="PAYMENT_FAILED",
        payment_due_by=datetime(2026, 12, 3, 0, 0, tzinfo=timezone(timedelta(hours=2))),
        allowed_transitions=None,
    ),
    "no lines, odd money": order(items=[], total_amount=Decimal("0.005"), version=1),
    "many lines": order(
        items=[line(n, unit_price=Decimal("0.10"), line_total=Decimal("1.23456")) for n in range(60)]
    ),
}


@pytest.mark.parametrize("name", list(ORDERS))
def test_an_order_renders_as_its_schema_dumps_it(name):
    assert as_json(ORDER_BODY(ORDERS[name])) == as_json(OrderSchema().dump(ORDERS[name]))


def test_a_product_renders_as_its_schema_dumps_it():
    app = Flask(__name__)
    app.config["CURRENCY"] = "EUR"
    product = ProductView(uuid.UUID(int=9), "Espresso cup", "", Decimal("12.5"), 0, 5)
    with app.app_context():
        assert as_json(PRODUCT_BODY(product)) == as_json(ProductSchema().dump(product))


def test_a_missing_key_is_left_out_as_dump_leaves_it_out():
    class Line(ma.Schema):
        a = ma.fields.String()
        b = ma.fields.Integer(allow_none=True)

    for obj in ({"a": "x"}, {"b": None}, {}, {"a": "x", "b": 2}):
        assert as_json(compiled(Line())(obj)) == as_json(Line().dump(obj))


def test_a_schema_it_cannot_render_exactly_is_refused():
    class Hooked(ma.Schema):
        a = ma.fields.String()

        @ma.post_dump
        def shout(self, data, **kwargs):
            return {k: v.upper() for k, v in data.items()}

    class Defaulted(ma.Schema):
        a = ma.fields.String(dump_default="x")

    class Other(ma.Schema):
        a = ma.fields.Float()

    for schema in (Hooked(), Defaulted(), Other()):
        with pytest.raises(NotCompilable):
            compiled(schema)
