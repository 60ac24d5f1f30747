"""The OpenAPI document is generator-friendly: enums are named components, nullable refs standard."""

from __future__ import annotations

import re
from typing import Any

from app.api.openapi import ENUM_COMPONENTS
from app.domain.orders import ORDER_STATUSES
from app.domain.payments import PAYMENT_METHODS, PAYMENT_STATUSES


def nodes(node: Any, path: str = "") -> Any:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from nodes(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from nodes(value, f"{path}[{index}]")


def test_every_enum_is_a_named_component_referenced_where_used(client):
    doc = client.get("/openapi.json").get_json()
    schemas = doc["components"]["schemas"]
    for name, values in ENUM_COMPONENTS.items():
        assert schemas[name] == {"type": "string", "enum": list(values)}
    assert schemas["OrderStatus"]["enum"] == list(ORDER_STATUSES)
    assert schemas["PaymentStatus"]["enum"] == list(PAYMENT_STATUSES)
    assert schemas["PaymentMethod"]["enum"] == list(PAYMENT_METHODS)
    top_level = {f"/components/schemas/{name}" for name in schemas}
    inline = [path for path, node in nodes(doc) if "enum" in node and path not in top_level]
    assert inline == [], inline
    order = schemas["Order"]["properties"]
    assert order["status"] == {"$ref": "#/components/schemas/OrderStatus"}
    assert order["cancelReason"] == {
        "allOf": [{"$ref": "#/components/schemas/CancelReason"}],
        "nullable": True,
    }
    assert schemas["OrderPayment"]["properties"]["status"] == {"$ref": "#/components/schemas/PaymentStatus"}
    status_param = next(p for p in doc["paths"]["/orders"]["get"]["parameters"] if p["name"] == "status")
    assert status_param["schema"] == {"$ref": "#/components/schemas/OrderStatus"}


def test_nullable_nested_objects_use_the_standard_form(client):
    doc = client.get("/openapi.json").get_json()
    assert [path for path, node in nodes(doc) if "anyOf" in node or "oneOf" in node] == []
    payment = doc["components"]["schemas"]["Order"]["properties"]["payment"]
    assert payment == {"allOf": [{"$ref": "#/components/schemas/OrderPayment"}], "nullable": True}


def test_no_two_schemas_share_a_name(client):
    """apispec renames a second schema class with the same name to ``Name1`` (with only a
    warning): generated clients would then get a meaningless type. Every component name is its own."""
    schemas = client.get("/openapi.json").get_json()["components"]["schemas"]
    assert [name for name in schemas if re.search(r"\d$", name)] == []
