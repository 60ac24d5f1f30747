"""OWASP API4:2023 (unrestricted resource consumption): every input is bounded.

Bodies over 1 MiB are refused (413) on every endpoint that takes one; pages hold at most 100
items (``pageSize`` 1–100, else 422) on every list; every string a client sends in a body or a
query has a maximum length in the OpenAPI document (headers are bounded by gunicorn);
``POST /auth/token`` and ``POST /orders`` are rate-limited (429 with ``Retry-After``:
tests/api/test_auth.py and test_owasp_api6_business_flows.py). Each database statement is bounded
by ``statement_timeout`` and each request's wait for a lock by ``lock_timeout``.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.api import test_authorization_matrix as matrix
from tests.api.test_owasp_api3_property_level import WRITE_ROWS, allowed_caller

ONE_MIB = 1024 * 1024


@pytest.fixture(scope="module")
def spec(app) -> dict[str, Any]:
    return app.test_client().get("/openapi.json").get_json()


@pytest.mark.parametrize("row", WRITE_ROWS, ids=str)
def test_a_body_over_one_mebibyte_is_413_problem(app, client, row):
    if row.key not in matrix.registered_routes(app):
        pytest.skip(f"{row} is not registered yet")
    world = matrix.build_world(app)
    padding = "x" * ONE_MIB
    response = client.open(
        world.path(row.path),
        method=row.method,
        headers=world.headers[allowed_caller(row)],
        data='{"padding": "' + padding + '"}',
        content_type="application/json",
    )
    assert response.status_code == 413
    assert response.headers["Content-Type"] == "application/problem+json"


def paginated_operations(spec: dict[str, Any]) -> list[str]:
    return sorted(
        path
        for path, operations in spec["paths"].items()
        if any(p.get("name") == "pageSize" for p in operations.get("get", {}).get("parameters", []))
    )


def test_every_list_is_paginated_and_documented_so(spec):
    assert set(paginated_operations(spec)) >= {"/products", "/orders", "/users/{userId}/notifications"}
    for path in paginated_operations(spec):
        (size,) = [p for p in spec["paths"][path]["get"]["parameters"] if p["name"] == "pageSize"]
        assert size["schema"]["maximum"] == 100, path


@pytest.mark.parametrize(("page_size", "status"), [(0, 422), (1, 200), (100, 200), (101, 422), (10**9, 422)])
def test_page_size_is_bounded_on_every_list(app, client, spec, page_size, status):
    world = matrix.build_world(app)
    for template in paginated_operations(spec):
        path = world.path(template)
        response = client.get(path, query_string={"pageSize": page_size}, headers=world.headers["admin"])
        assert response.status_code == status, (path, response.get_json())
        if status == 200:
            assert len(response.get_json()["items"]) <= page_size


def strings_without_a_bound(schema: dict[str, Any], spec: dict[str, Any], where: str) -> list[str]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    unbounded = []
    bounded_by_format = schema.get("format") in ("uuid", "date-time", "date")
    if schema.get("type") == "string" and not ({"maxLength", "enum"} & set(schema) or bounded_by_format):
        unbounded.append(where)
    for name, sub in schema.get("properties", {}).items():
        unbounded += strings_without_a_bound(sub, spec, f"{where}.{name}")
    if "items" in schema:
        unbounded += strings_without_a_bound(schema["items"], spec, f"{where}[]")
    return unbounded


def test_every_string_a_client_sends_has_a_maximum_length(spec):
    unbounded = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if not isinstance(operation, dict):
                continue
            # Headers are bounded by the server itself (gunicorn: 8190 bytes a field, 100 fields).
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "query":
                    unbounded += strings_without_a_bound(
                        parameter.get("schema", {}), spec, f"{method.upper()} {path} {parameter['name']}"
                    )
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                unbounded += strings_without_a_bound(body["schema"], spec, f"{method.upper()} {path} body")
    assert unbounded == []


def test_database_work_per_request_is_bounded(app):
    options = app.config["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"]["options"]
    assert "statement_timeout=" in options
    assert "lock_timeout=" in options
    assert app.config["SQLALCHEMY_ENGINE_OPTIONS"]["pool_timeout"] <= 5
