"""OWASP API5:2023 (broken function level authorization): admin functions refuse customers.

The list of admin functions is not written by hand: it is every route whose declared access
policy is ``admin_only`` (app/api/security.py), so a new admin route is covered the day it is
added. Each answers a customer 403 — before looking at the body (an invalid one gets 403, not
422) — and so do the admin-only order transitions (SHIPPED, DELIVERED) and refunds, even on the
customer's own order (the role is checked before the state).
"""

from __future__ import annotations

import re

import pytest

from app.api.security import ADMIN, EXEMPT_ENDPOINTS, policy_of
from tests.api import test_authorization_matrix as matrix


def admin_routes(app) -> list[tuple[str, str]]:
    routes = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in EXEMPT_ENDPOINTS:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            policy = policy_of(app, rule.endpoint, method)
            if policy is not None and policy.kind == ADMIN:
                routes.append((method, rule.rule))
    return sorted(routes)


def concrete(path: str, world: matrix.World) -> str:
    values = {
        "product_id": world.product_id,
        "order_id": world.order_id,
        "notification_id": world.notification_id,
        "reconciliation_id": world.reconciliation_id,
        "name": "checkout",
    }
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(values[m.group(1)]), path)


def test_the_admin_functions_are_the_ones_the_spec_names(app):
    paths = {path for _, path in admin_routes(app)}
    spec_named = {"/users"}  # §5.6: the account list is an admin function outside /admin
    assert all(
        p.startswith("/admin") or p.startswith("/products") or p.endswith("/refund") or p in spec_named
        for p in paths
    )
    assert {p for p in paths if p.startswith("/admin")}, "no /admin route found"


@pytest.mark.parametrize("body", [None, {"not": "valid"}], ids=["no-body", "invalid-body"])
def test_every_admin_route_is_403_problem_for_a_customer(app, client, body):
    world = matrix.build_world(app)
    for method, path in admin_routes(app):
        for caller in ("owner", "other"):
            response = client.open(
                concrete(path, world), method=method, headers=world.headers[caller], json=body
            )
            assert response.status_code == 403, (method, path, caller, response.get_json())
            assert response.headers["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize("status", ["SHIPPED", "DELIVERED"])
def test_admin_only_transitions_are_403_for_the_orders_owner(app, client, status):
    world = matrix.build_world(app)
    response = client.put(
        f"/orders/{world.order_id}", json={"status": status}, headers=world.headers["owner"]
    )
    assert response.status_code == 403
    order = client.get(f"/orders/{world.order_id}", headers=world.headers["owner"]).get_json()
    assert order["status"] == "PLACED"
