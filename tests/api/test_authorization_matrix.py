"""Who may call what (SPEC §3/§4), checked for every route the app registers.

Each row of ``EXPECTED`` gives the status expected for four callers: anonymous, another
customer, the owner of the resources in the path/body, and an admin. A registered route without
a row fails ``test_every_registered_route_has_a_row``, so a new endpoint cannot ship without
stating who may call it. A row whose route is not registered (yet) is reported as skipped.

Semantics (SPEC §3): anonymous → 401 on anything non-public; another customer → 404 on
user-owned resources (never reveal them); admin-only routes → 403 for customers, before any
validation or state check; an admin may read other users' resources, but carts and checkout
belong to their user alone → 403 for an admin.

Every cell runs against a fresh world of real rows created through the ORM (not through other
services), and sends a valid body, so the answer is about authorization, not validation or state.
"""

from __future__ import annotations

import functools
import itertools
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask

from app.adapters.passwords import hash_password
from app.api.security import EXEMPT_ENDPOINTS, issue_token
from app.domain.accounts import PURPOSE_PASSWORD_RESET, PURPOSE_VERIFY_EMAIL, new_account_token
from app.domain.base import utcnow
from app.domain.carts import Cart, CartItem
from app.domain.catalogue import Product
from app.domain.notifications import Notification
from app.domain.operations import Reconciliation
from app.domain.orders import Order, OrderItem, OrderStatusChange
from app.domain.payments import Payment
from app.domain.users import User
from app.extensions import db

ROLES = ("anonymous", "other", "owner", "admin")
PASSWORD = "matrix-password"
ADDRESS = {"line1": "1 Main St", "city": "Springfield", "postalCode": "12345", "country": "US"}

_event_ids = itertools.count(1)


@dataclass(frozen=True)
class World:
    """Real rows: ``owner`` owns the cart, the order (paid), the notification; ``other`` owns nothing."""

    owner_id: uuid.UUID
    owner_email: str
    cart_id: uuid.UUID
    product_id: uuid.UUID
    order_id: uuid.UUID
    notification_id: uuid.UUID
    reconciliation_id: uuid.UUID
    headers: dict[str, dict[str, str]]
    reset_token: str = ""  # the secret of a live password-reset token of the owner
    verify_token: str = ""  # the secret of the owner's e-mail verification token

    def path(self, template: str) -> str:
        values = {
            "userId": self.owner_id,
            "productId": self.product_id,
            "orderId": self.order_id,
            "notificationId": self.notification_id,
            "reconciliationId": self.reconciliation_id,
            "cartId": self.cart_id,
            "name": "checkout",
        }
        return re.sub(r"\{(\w+)\}", lambda m: str(values[m.group(1)]), template)


Body = Callable[[World], dict[str, Any]]


@dataclass(frozen=True)
class Row:
    method: str
    path: str  # as SPEC writes it: /users/{userId}
    expect: tuple[int, int, int, int]  # anonymous, another customer, owner, admin
    body: Body | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.method, shape(self.path)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def shape(path: str) -> str:
    """``/users/<uuid:user_id>`` and ``/users/{userId}`` both become ``/users/{}``."""
    return re.sub(r"<[^>]+>|\{[^}]+\}", "{}", path)


def _new_user(_: World) -> dict[str, Any]:
    return {
        "name": "New Customer",
        "email": f"new-{uuid.uuid4().hex[:10]}@example.com",
        "password": PASSWORD,
        "address": ADDRESS,
    }


def _new_product(_: World) -> dict[str, Any]:
    return {"productName": "Matrix product", "description": "", "price": 3.5, "stock": 4}


PUBLIC = (200, 200, 200, 200)
SELF_OR_ADMIN_READ = (401, 404, 200, 200)
ADMIN_ONLY = (401, 403, 403, 200)
SELF_ONLY_WRITE = (401, 404, 200, 403)

EXPECTED: list[Row] = [
    # Users and auth
    Row("POST", "/users", (201, 201, 201, 201), _new_user),
    Row("POST", "/auth/token", PUBLIC, lambda w: {"email": w.owner_email, "password": PASSWORD}),
    Row("POST", "/auth/password-reset", (202, 202, 202, 202), lambda w: {"email": w.owner_email}),
    # Public: the e-mailed token is the credential (no access token needed, whoever sends it).
    Row(
        "POST",
        "/auth/password-reset/confirm",
        (204, 204, 204, 204),
        lambda w: {"token": w.reset_token, "password": "a-new-password"},
    ),
    Row("POST", "/auth/logout", (401, 204, 204, 204)),
    Row("GET", "/admin/notifications", ADMIN_ONLY),
    Row("POST", "/auth/verify-email", (204, 204, 204, 204), lambda w: {"token": w.verify_token}),
    Row("GET", "/users", ADMIN_ONLY),
    Row("GET", "/users/{userId}", SELF_OR_ADMIN_READ),
    Row("PATCH", "/users/{userId}", SELF_OR_ADMIN_READ, lambda w: {"name": "Renamed"}),
    Row("DELETE", "/users/{userId}", (401, 404, 204, 204)),
    Row("GET", "/users/{userId}/notifications", SELF_OR_ADMIN_READ),
    # Products
    Row("GET", "/products", PUBLIC),
    Row("GET", "/products/{productId}", PUBLIC),
    Row("POST", "/products", (401, 403, 403, 201), _new_product),
    Row("PATCH", "/products/{productId}", ADMIN_ONLY, lambda w: {"price": 9.99}),
    Row(
        "POST",
        "/products/{productId}/stock-movements",
        (401, 403, 403, 201),
        lambda w: {"delta": 5, "reason": "RESTOCK"},
    ),
    # Cart: the user's alone (an admin may look, not touch)
    Row("GET", "/cart/{userId}", SELF_OR_ADMIN_READ),
    Row(
        "POST",
        "/cart/{userId}/add",
        (401, 404, 201, 403),
        lambda w: {"productId": str(w.product_id), "quantity": 1},
    ),
    Row("PUT", "/cart/{userId}/items/{productId}", SELF_ONLY_WRITE, lambda w: {"quantity": 2}),
    Row("DELETE", "/cart/{userId}/items/{productId}", (401, 404, 204, 403)),
    Row("DELETE", "/cart/{userId}", (401, 404, 204, 403)),
    # Orders: checkout is the user's alone; the rest is owner or admin
    Row(
        "POST",
        "/orders",
        (401, 404, 201, 403),
        lambda w: {"userId": str(w.owner_id), "cartId": str(w.cart_id)},
    ),
    Row("GET", "/orders", (401, 200, 200, 200)),
    Row("GET", "/orders/{orderId}", SELF_OR_ADMIN_READ),
    Row("PUT", "/orders/{orderId}", SELF_OR_ADMIN_READ, lambda w: {"status": "CANCELLED"}),
    Row("DELETE", "/orders/{orderId}", (401, 404, 204, 204)),
    Row("GET", "/orders/{orderId}/payment", SELF_OR_ADMIN_READ),
    Row("GET", "/orders/{orderId}/history", SELF_OR_ADMIN_READ),
    Row("POST", "/orders/{orderId}/refund", (401, 403, 403, 202)),
    # Paying again is the owner's alone (the world's order is paid: 409 once authorised)
    Row(
        "POST",
        "/orders/{orderId}/payment",
        (401, 404, 409, 403),
        lambda w: {"paymentToken": "pm_card_mastercard"},
    ),
    # Webhooks in: no token, the signature is the credential (none here: 400 for everyone)
    Row("POST", "/webhooks/stripe", (400, 400, 400, 400)),
    # Administration
    Row("POST", "/admin/notifications/{notificationId}/retry", (401, 403, 403, 202)),
    Row("POST", "/admin/reconciliations", (401, 403, 403, 202)),
    Row("GET", "/admin/reconciliations/{reconciliationId}", ADMIN_ONLY),
    Row("GET", "/admin/features", ADMIN_ONLY),
    Row("PUT", "/admin/features/{name}", ADMIN_ONLY, lambda w: {"enabled": True}),
    # Operations
    Row("GET", "/healthz", PUBLIC),
    Row("GET", "/readyz", PUBLIC),
    Row("GET", "/metrics", PUBLIC),
]


def registered_routes(app: Flask) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint in EXEMPT_ENDPOINTS or rule.endpoint.startswith(("api-docs.", "docs-assets.")):
            continue
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            routes.add((method, shape(rule.rule)))
    return routes


@functools.cache
def _password_hash() -> str:
    return hash_password(PASSWORD)


def _user(role: str) -> User:
    return User(
        id=uuid.uuid4(),
        email=f"{role}-{uuid.uuid4().hex[:10]}@example.com",
        name=f"Matrix {role}",
        password_hash=_password_hash(),
        address=dict(ADDRESS),
        role=role,
        token_version=1,
    )


def build_world(app: Flask) -> World:
    """Three users and, for the owner, a cart with a line, a paid PLACED order and a failed notification."""
    with app.app_context():
        owner, other, admin = _user("customer"), _user("customer"), _user("admin")
        product = Product(id=uuid.uuid4(), name="Matrix mug", description="", price=Decimal("5.00"), stock=50)
        db.session.add_all([owner, other, admin, product])
        db.session.flush()
        cart = Cart(id=uuid.uuid4(), user_id=owner.id)
        order = Order(
            id=uuid.uuid4(),
            user_id=owner.id,
            status="PLACED",
            total_amount=Decimal("5.00"),
            currency="USD",
            version=1,
        )
        reconciliation = Reconciliation(
            id=uuid.uuid4(), status="COMPLETED", products_checked=1, orders_expired=0, discrepancies=[]
        )
        db.session.add_all([cart, order, reconciliation])
        db.session.flush()
        notification = Notification(
            id=uuid.uuid4(),
            user_id=owner.id,
            order_id=order.id,
            event_id=next(_event_ids),
            event="OrderPlaced",
            recipient=owner.email,
            subject="Order placed",
            message="Your order was placed",
            status="FAILED",
            attempts=5,
            last_error="SMTP down",
        )
        db.session.add_all(
            [
                CartItem(cart_id=cart.id, product_id=product.id, quantity=1),
                OrderItem(
                    order_id=order.id,
                    product_id=product.id,
                    product_name=product.name,
                    quantity=1,
                    unit_price=Decimal("5.00"),
                    line_total=Decimal("5.00"),
                ),
                OrderStatusChange(order_id=order.id, from_status=None, to_status="PLACED", actor="system"),
                Payment(
                    order_id=order.id,
                    amount=Decimal("5.00"),
                    currency="USD",
                    status="COMPLETED",
                    method="CREDIT_CARD",
                    payment_token="pm_card_visa",
                    gateway_reference="pi_matrix",
                    attempts=1,
                ),
                notification,
            ]
        )
        reset, reset_secret = new_account_token(
            owner.id, PURPOSE_PASSWORD_RESET, app.config["SECRET_KEY"], timedelta(hours=1), utcnow()
        )
        verify, verify_secret = new_account_token(
            owner.id, PURPOSE_VERIFY_EMAIL, app.config["SECRET_KEY"], timedelta(hours=1), utcnow()
        )
        db.session.add_all([reset, verify])
        db.session.commit()
        with app.test_request_context():
            headers = {
                role: {"Authorization": f"Bearer {issue_token(user)[0]}"}
                for role, user in (("other", other), ("owner", owner), ("admin", admin))
            }
        headers["anonymous"] = {}
        world = World(
            owner_id=owner.id,
            owner_email=owner.email or "",
            cart_id=cart.id,
            product_id=product.id,
            order_id=order.id,
            notification_id=notification.id,
            reconciliation_id=reconciliation.id,
            headers=headers,
            reset_token=reset_secret,
            verify_token=verify_secret,
        )
        db.session.remove()
    return world


def test_every_registered_route_has_a_row(app):
    missing = registered_routes(app) - {row.key for row in EXPECTED}
    assert not missing, "routes without a row in EXPECTED: " + ", ".join(
        f"{method} {path}" for method, path in sorted(missing, key=lambda k: (k[1], k[0]))
    )


def test_the_table_has_one_row_per_route():
    keys = [row.key for row in EXPECTED]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("row", EXPECTED, ids=str)
def test_each_caller_gets_the_specified_status(app, client, row):
    if row.key not in registered_routes(app):
        pytest.skip(f"{row} is not registered yet")
    got: dict[str, int] = {}
    details: dict[str, str] = {}
    for role in ROLES:
        world = build_world(app)  # fresh rows for every caller: some calls change or delete them
        response = client.open(
            world.path(row.path),
            method=row.method,
            headers=world.headers[role],
            json=row.body(world) if row.body else None,
        )
        got[role] = response.status_code
        details[role] = response.get_data(as_text=True)[:300]
    expected = dict(zip(ROLES, row.expect, strict=True))
    assert got == expected, f"{row}: {details}"
