"""OWASP API3:2023 (broken object property level authorization), both directions.

In: a field the client may not set (ids, roles, prices, totals, stock, status on create, versions,
internal columns) is a 422 naming that field on every endpoint that takes a body — never silently
applied, never silently dropped. Out: no response, for any caller, carries a password or its hash,
the token version, ``deleted_at``, a payment token or any other internal field.

The authorization matrix's world and rows (tests/api/test_authorization_matrix.py) give, for
every route, a caller allowed to use it and a valid body, so each 422 here is about the one extra
field and nothing else.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.api import test_authorization_matrix as matrix
from tests.api.leaks import allowed_top_level, internal_fields

# Fields a client never sets (SPEC §3), in the API's spelling and in the columns' spelling.
SERVER_OWNED = [
    "id",
    "userId",
    "orderId",
    "productId",
    "paymentId",
    "cartId",
    "role",
    "status",
    "price",
    "totalAmount",
    "subtotal",
    "stock",
    "version",
    "currency",
    "createdAt",
    "attempts",
    "gatewayReference",
    "passwordHash",
    "password_hash",
    "tokenVersion",
    "token_version",
    "deletedAt",
    "deleted_at",
]

WRITE_ROWS = [row for row in matrix.EXPECTED if row.body is not None]


def allowed_caller(row: matrix.Row) -> str:
    """The first of owner/admin (then anyone) whom the matrix lets through (a 409 is let through
    too: authorised, refused only by the world's state — the body is checked before that)."""
    expected = dict(zip(matrix.ROLES, row.expect, strict=True))
    for role in ("owner", "admin", "anonymous"):
        if 200 <= expected[role] < 300 or expected[role] == 409:
            return role
    raise AssertionError(f"nobody may call {row}")


def accepted_fields(spec: dict[str, Any], row: matrix.Row) -> set[str]:
    """The body properties the OpenAPI document accepts for this route."""
    for path, operations in spec["paths"].items():
        if matrix.shape(path) == matrix.shape(row.path) and row.method.lower() in operations:
            schema = operations[row.method.lower()]["requestBody"]["content"]["application/json"]["schema"]
            while "$ref" in schema:
                schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
            return set(schema.get("properties", {}))
    raise AssertionError(f"{row} is not documented")


@pytest.fixture(scope="module")
def spec(app) -> dict[str, Any]:
    return app.test_client().get("/openapi.json").get_json()


@pytest.mark.parametrize("row", WRITE_ROWS, ids=str)
def test_every_field_the_client_may_not_set_is_a_422_naming_it(app, client, spec, row):
    if row.key not in matrix.registered_routes(app):
        pytest.skip(f"{row} is not registered yet")
    world = matrix.build_world(app)
    caller = allowed_caller(row)
    accepted = accepted_fields(spec, row)
    tried = []
    for field in SERVER_OWNED:
        if field in accepted:
            continue
        body = {**row.body(world), field: "00000000-0000-0000-0000-000000000001"}
        response = client.open(
            world.path(row.path), method=row.method, headers=world.headers[caller], json=body
        )
        assert response.status_code == 422, f"{row} + {field}: {response.status_code} {response.get_data()!r}"
        assert field in response.get_json()["errors"], f"{row} + {field}: {response.get_json()}"
        tried.append(field)
    assert tried, f"{row} accepts every server-owned field?"


def test_a_nested_unknown_field_is_a_422_too(client, customer, token_for):
    response = client.patch(
        f"/users/{customer.id}",
        json={
            "address": {
                "line1": "2 Elm St",
                "city": "Shelbyville",
                "postalCode": "1",
                "country": "US",
                "verified": True,
            }
        },
        headers=token_for(customer),
    )
    assert response.status_code == 422
    assert "verified" in response.get_json()["errors"]["address"]


def test_a_refused_role_is_not_applied(client, customer, token_for, app):
    headers = token_for(customer)
    assert client.patch(f"/users/{customer.id}", json={"role": "admin"}, headers=headers).status_code == 422
    assert client.get("/admin/features", headers=token_for(customer)).status_code == 403


def crawl(app, client) -> list[tuple[str, str, int, Any]]:
    """Every route, called by each of the four callers on a fresh world; the JSON bodies."""
    seen = []
    routes = matrix.registered_routes(app)
    for row in matrix.EXPECTED:
        if row.key not in routes:
            continue
        for role in matrix.ROLES:
            world = matrix.build_world(app)
            response = client.open(
                world.path(row.path),
                method=row.method,
                headers=world.headers[role],
                json=row.body(world) if row.body else None,
            )
            if response.is_json and response.data:
                seen.append((str(row), role, response.status_code, response.get_json()))
            if row.method == "POST" and response.status_code == 201 and response.headers.get("Location"):
                follow = client.get(response.headers["Location"], headers=world.headers[role])
                if follow.is_json and follow.data:
                    seen.append(
                        (f"GET {response.headers['Location']}", role, follow.status_code, follow.get_json())
                    )
    # Lists as an admin sees them: everything, every user's.
    world = matrix.build_world(app)
    for path in ("/orders?pageSize=100", "/products?pageSize=100", f"/users/{world.owner_id}/notifications"):
        response = client.get(path, headers=world.headers["admin"])
        seen.append((f"GET {path}", "admin", response.status_code, response.get_json()))
    return seen


def _shown_once(route: str) -> frozenset[str]:
    method, _, path = route.partition(" ")
    return allowed_top_level(method, matrix.shape(path))


def test_no_response_carries_a_secret_or_an_internal_field(app, client):
    seen = crawl(app, client)
    assert len(seen) > 100
    leaks = {
        f"{route} as {role} → {status}": found
        for route, role, status, body in seen
        if (found := internal_fields(body, allowed=_shown_once(route)))
    }
    assert leaks == {}


def test_the_scanner_catches_what_it_is_for():
    assert internal_fields({"user": {"password_hash": "x"}}) == ["$.user.password_hash"]
    assert internal_fields([{"tokenVersion": 1}]) == ["$[0].tokenVersion"]
    assert internal_fields({"note": "$argon2id$v=19$m=65536"}) != []
    assert internal_fields({"name": "Ada", "email": "ada@example.com", "status": "PLACED"}) == []
    problem = {
        "type": "urn:oms:problem:validation-failed",
        "status": 422,
        "errors": {"password": ["Too short."]},
    }
    assert internal_fields(problem) == []
    assert internal_fields({**problem, "errors": {"password": ["$argon2id$v=19$"]}}) != []
    assert re.fullmatch(r"\$\.a", internal_fields({"a": "sk_test_123"})[0].split(" ")[0])
