"""Fuzzing the API against its own OpenAPI document (schemathesis, in process over WSGI).

Every operation of ``/openapi.json`` is exercised with generated requests — valid ones and, in
schemathesis' coverage and negative phases, invalid ones — once with a customer's token and once
with an admin's. Each response must be no 5xx, and must conform to the document: a status code it
declares, the content type it declares, a body matching the declared schema and the declared
headers. When a check fails the fix is the documentation (or the code), never a looser check.

Path ids are mostly real ones (the caller's own user id, a real product), so the fuzzer reaches the
handlers' logic rather than only their 404s. Examples are bounded and derandomized so CI is stable.
"""

from __future__ import annotations

import itertools
import json
import re
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi import checks as openapi_checks

from tests.api.leaks import allowed_top_level, internal_fields

MAX_EXAMPLES = 20


@schemathesis.check
def no_internal_fields(ctx: Any, response: Any, case: Any) -> bool | None:
    """OWASP API3: no body the fuzzer sees carries a secret or an internal field."""
    if not response.content or "json" not in (response.headers.get("content-type") or [""])[0]:
        return None
    path_shape = re.sub(r"\{[^}]+\}", "{}", case.operation.path)
    found = internal_fields(response.json(), allowed=allowed_top_level(case.method, path_shape))
    if found:
        raise AssertionError(f"internal fields in the response: {found}")
    return None


CHECKS = [
    no_internal_fields,
    not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.response_headers_conformance,
]

FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)


@pytest.fixture
def api_schema(app: Flask) -> Any:
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


@pytest.fixture
def fuzz_world(app: Flask, make_user: Any) -> dict[str, Any]:
    """Real ids to substitute: a customer with a filled cart and a placed order, an admin, a product."""
    from app.domain.carts import Cart, CartItem
    from app.extensions import db
    from tests.shop import make_product, place_order_directly

    customer = make_user("customer")
    admin = make_user("admin")
    with app.app_context():
        product = make_product(db.session, price=str(Decimal("12.50")), stock=500)
        order = place_order_directly(db.session, customer.id, {product.id: 1})
        cart = Cart(user_id=customer.id)
        db.session.add(cart)
        db.session.flush()
        db.session.add(CartItem(cart_id=cart.id, product_id=product.id, quantity=2))
        db.session.commit()
        ids = {"productId": product.id, "orderId": order.id, "cartId": cart.id}
    return {"customer": customer, "admin": admin, "ids": ids}


def _fresh_headers(app: Flask, user_id: uuid.UUID) -> dict[str, str]:
    """A token for the user as stored now: a fuzzed PATCH of the password revokes older tokens."""
    from app.api.security import issue_token
    from app.domain.users import User
    from app.extensions import db

    with app.test_request_context():
        user = db.session.get(User, user_id)
        assert user is not None
        token, _ = issue_token(user)
        db.session.rollback()
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(autouse=True)
def _pytest9_node_id(request: pytest.FixtureRequest) -> None:
    """schemathesis' lazy loader renames ``node._nodeid``, an attribute pytest 9 no longer has."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api_schema")

# Alternate real and generated ids: a real id reaches the handler, a generated one its 404 path.
_toggle: Iterator[bool] = itertools.cycle([True, True, False])


def _substitute_ids(case: Any, user_id: uuid.UUID, world: dict[str, Any]) -> None:
    """Put real ids in the path and the body (most of the time) so the handlers' logic is reached."""
    if not next(_toggle):
        return
    real = {"userId": user_id, **world["ids"]}
    params = case.path_parameters or {}
    deleting_self = case.method.upper() == "DELETE" and case.path == "/users/{userId}"
    for name in params:
        if name in real and not (name == "userId" and deleting_self):
            params[name] = str(real[name])
    if isinstance(case.body, dict):
        for name in ("userId", "cartId", "productId"):
            if isinstance(case.body.get(name), str):
                case.body[name] = str(real[name])


def _refill_cart(app: Flask, world: dict[str, Any]) -> None:
    """Checkout needs a filled cart, and earlier fuzzed calls empty it."""
    from app.domain.carts import CartItem
    from app.extensions import db

    with app.app_context():
        key = {"cart_id": world["ids"]["cartId"], "product_id": world["ids"]["productId"]}
        if db.session.get(CartItem, key) is None:
            db.session.add(CartItem(**key, quantity=1))
            db.session.commit()
        db.session.remove()


def _call(case: Any, headers: dict[str, str]) -> None:
    # The generated Authorization header (a random bearer string) would win over ours: replace it.
    case.headers = {**(case.headers or {}), **headers}
    case.call_and_validate(checks=CHECKS)


@schema.parametrize()
@FUZZ_SETTINGS
def test_every_operation_conforms_for_a_customer(case: Any, app: Flask, fuzz_world: dict[str, Any]) -> None:
    user_id = fuzz_world["customer"].id
    _substitute_ids(case, user_id, fuzz_world)
    if case.method.upper() == "POST" and case.path == "/orders":
        _refill_cart(app, fuzz_world)
    _call(case, _fresh_headers(app, user_id))


@schema.parametrize()
@FUZZ_SETTINGS
def test_every_operation_conforms_for_an_admin(case: Any, app: Flask, fuzz_world: dict[str, Any]) -> None:
    user_id = fuzz_world["admin"].id
    _substitute_ids(case, user_id, fuzz_world)
    _call(case, _fresh_headers(app, user_id))


# ---- SPEC §5.10: text that cannot be stored is a 422, never a 500 --------------------------------

LONE_SURROGATES = ("\ud800", "\udfff", "\ud83d")


def _with_lone_surrogates(value: Any, position: Iterator[int]) -> Any:
    """Every string of a generated body, and every key, with a lone surrogate spliced in."""
    if isinstance(value, str):
        return value[:1] + LONE_SURROGATES[next(position) % 3] + value[1:]
    if isinstance(value, dict):
        return {
            _with_lone_surrogates(k, position): _with_lone_surrogates(v, position) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_with_lone_surrogates(item, position) for item in value]
    return value


SURROGATE_SETTINGS = settings(FUZZ_SETTINGS, max_examples=5)


@schema.parametrize()
@SURROGATE_SETTINGS
def test_lone_surrogates_in_any_body_are_never_a_server_error(
    case: Any, app: Flask, fuzz_world: dict[str, Any]
) -> None:
    if not isinstance(case.body, dict | list):
        return
    role = "admin" if case.path.startswith(("/admin", "/products")) else "customer"
    user_id = fuzz_world[role].id
    _substitute_ids(case, user_id, fuzz_world)
    # Sent as JSON text with \\uXXXX escapes (schemathesis itself cannot encode such a body).
    text = json.dumps(_with_lone_surrogates(case.body, itertools.count()))
    response = app.test_client().open(
        case.formatted_path,
        method=case.method.upper(),
        data=text,
        content_type="application/json",
        headers=_fresh_headers(app, user_id),
    )
    assert response.status_code < 500, (
        case.method,
        case.formatted_path,
        text,
        response.get_data(as_text=True),
    )
    if response.status_code == 422:
        assert response.mimetype == "application/problem+json"
