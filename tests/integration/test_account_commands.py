"""`flask create-admin` and `flask seed-demo` against the real database."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from app.adapters.passwords import verify_password
from app.domain.catalogue import Product, StockMovement
from app.domain.users import User
from app.extensions import db
from app.services.demo import DEMO_EMAIL, DEMO_PASSWORD, DEMO_PRODUCTS


def run(app, *args):
    return app.test_cli_runner().invoke(args=list(args))


def test_create_admin_creates_an_admin_and_prints_its_id(app, app_ctx):
    result = run(app, "create-admin", "--email", "Boss@Example.com", "--password", "very-secret-1")
    assert result.exit_code == 0, result.output
    user = db.session.get(User, uuid.UUID(result.stdout.strip()))
    assert user.role == "admin"
    assert user.email == "Boss@example.com"
    assert verify_password(user.password_hash, "very-secret-1")


def test_create_admin_promotes_an_existing_customer_and_sets_the_password(app, app_ctx, customer):
    result = run(app, "create-admin", "--email", customer.email.upper(), "--password", "new-admin-pass")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(customer.id)
    user = db.session.get(User, customer.id)
    assert user.role == "admin"
    assert verify_password(user.password_hash, "new-admin-pass")
    assert user.token_version == customer.token_version + 1
    assert db.session.scalar(select(func.count()).select_from(User)) == 1


def test_the_promoted_admin_logs_in_with_the_admin_role(app, client, customer):
    run(app, "create-admin", "--email", customer.email, "--password", "new-admin-pass")
    token = client.post("/auth/token", json={"email": customer.email, "password": "new-admin-pass"})
    headers = {"Authorization": f"Bearer {token.get_json()['accessToken']}"}
    product = {"productName": "Admin-made", "description": "", "price": 1, "stock": 0}
    assert client.post("/products", json=product, headers=headers).status_code == 201


def test_create_admin_rejects_a_short_password_and_a_bad_email(app, app_ctx):
    short = run(app, "create-admin", "--email", "a@example.com", "--password", "short")
    assert short.exit_code != 0
    assert "password" in short.output
    bad = run(app, "create-admin", "--email", "not-an-email", "--password", "long-enough")
    assert bad.exit_code != 0
    assert "email" in bad.output
    assert db.session.scalar(select(func.count()).select_from(User)) == 0


def test_seed_demo_loads_a_customer_and_products_with_ledgered_stock(app, client, app_ctx):
    result = run(app, "seed-demo")
    assert result.exit_code == 0, result.output
    assert DEMO_EMAIL in result.output
    assert (
        client.post("/auth/token", json={"email": DEMO_EMAIL, "password": DEMO_PASSWORD}).status_code == 200
    )
    products = list(db.session.scalars(select(Product)))
    assert {p.name for p in products} == {name for name, *_ in DEMO_PRODUCTS}
    assert all(p.stock > 0 for p in products)
    for product in products:
        ledger = db.session.scalar(
            select(func.sum(StockMovement.delta)).where(StockMovement.product_id == product.id)
        )
        assert ledger == product.stock


def test_seed_demo_is_a_no_op_the_second_time(app, app_ctx):
    run(app, "seed-demo")
    before = (
        db.session.scalar(select(func.count()).select_from(User)),
        db.session.scalar(select(func.count()).select_from(Product)),
        db.session.scalar(select(func.count()).select_from(StockMovement)),
    )
    again = run(app, "seed-demo")
    assert again.exit_code == 0, again.output
    assert "already present" in again.output
    after = (
        db.session.scalar(select(func.count()).select_from(User)),
        db.session.scalar(select(func.count()).select_from(Product)),
        db.session.scalar(select(func.count()).select_from(StockMovement)),
    )
    assert after == before
