"""SPEC §5.10 security defaults: one test (at least) per finding of the attacker's probe (issue 21)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
from flask import Flask
from flask_jwt_extended import create_access_token
from sqlalchemy import func, select, update

from app.domain.carts import CartItem
from app.domain.catalogue import Product
from app.domain.orders import Order
from app.domain.users import User
from app.extensions import db, limiter
from tests.api.test_conventions import assert_problem
from tests.conftest import make_app
from tests.shop import make_product

PASSWORD = "correct horse battery"  # the password of conftest's make_user
ADDRESS = {"line1": "1 Main St", "city": "Springfield", "postalCode": "12345", "country": "US"}


problem = assert_problem


def address() -> str:
    """A client address of its own, so that no other test shares its rate-limit bucket."""
    return f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"


def sign_up(client, email=None, remote=None, **extra):
    body = {
        "name": "Ada",
        "email": email or f"ada-{uuid.uuid4().hex[:8]}@example.com",
        "password": PASSWORD,
        "address": ADDRESS,
        **extra,
    }
    return client.post("/users", json=body, environ_base={"REMOTE_ADDR": remote or address()})


def log_in(client, email, password=PASSWORD, remote=None):
    return client.post(
        "/auth/token",
        json={"email": email, "password": password},
        environ_base={"REMOTE_ADDR": remote or address()},
    )


def raw_json(client, method, path, text, headers=None):
    """A body as JSON text, so escapes like ``\\ud800`` reach the server as written."""
    return client.open(
        path,
        method=method,
        data=text.encode("ascii"),
        content_type="application/json",
        headers=headers or {},
        environ_base={"REMOTE_ADDR": address()},
    )


# ---- High: forged admin tokens; the role comes from the database --------------------------------


def test_the_signing_key_is_not_the_old_default_that_shipped_in_the_repository(app, client, customer):
    old_default = "dev-insecure-secret-key-change-me-0123456789"
    assert app.config["JWT_SECRET_KEY"] != old_default
    import jwt as pyjwt

    forged = pyjwt.encode(
        {"sub": str(customer.id), "role": "admin", "tv": 1, "exp": 4102444800, "type": "access"},
        old_default,
        algorithm="HS256",
    )
    problem(client.get("/admin/features", headers={"Authorization": f"Bearer {forged}"}), 401)


def test_a_role_claim_in_the_token_grants_nothing_the_database_does_not(app, client, customer):
    with app.test_request_context():
        token = create_access_token(
            identity=str(customer.id), additional_claims={"role": "admin", "tv": customer.token_version}
        )
    problem(client.get("/admin/features", headers={"Authorization": f"Bearer {token}"}), 403)
    problem(client.get(f"/users/{uuid.uuid4()}", headers={"Authorization": f"Bearer {token}"}), 404)


def test_a_demoted_admin_loses_admin_rights_at_the_next_request(app, client, admin, token_for):
    headers = token_for(admin)
    assert client.get("/admin/features", headers=headers).status_code == 200
    with app.app_context():
        db.session.execute(update(User).where(User.id == admin.id).values(role="customer"))
        db.session.commit()
    problem(client.get("/admin/features", headers=headers), 403)


def test_a_promoted_customer_gains_admin_rights_without_a_new_token(app, client, customer, token_for):
    headers = token_for(customer)
    problem(client.get("/admin/features", headers=headers), 403)
    with app.app_context():
        db.session.execute(update(User).where(User.id == customer.id).values(role="admin"))
        db.session.commit()
    assert client.get("/admin/features", headers=headers).status_code == 200


# ---- Medium: sign-up and login limits -----------------------------------------------------------


@pytest.fixture
def strict_limits_app(database_url, redis_url, app) -> Iterator[Flask]:
    yield make_app(
        database_url,
        redis_url,
        SIGNUP_RATE_LIMIT="2/hour",
        AUTH_RATE_LIMIT="1000/minute",
        AUTH_ACCOUNT_RATE_LIMIT="3/hour",
    )
    limiter.init_app(app)  # the limiter is process-wide: bind its storage back to the session app


def test_sign_ups_are_rate_limited_per_client_address(strict_limits_app):
    client = strict_limits_app.test_client()
    remote = address()
    assert [sign_up(client, remote=remote).status_code for _ in range(2)] == [201, 201]
    response = sign_up(client, remote=remote)
    problem(response, 429)
    assert int(response.headers["Retry-After"]) > 0
    assert sign_up(client, remote=address()).status_code == 201  # another address has its own budget


def test_malformed_sign_ups_count_against_the_limit_too(strict_limits_app):
    client = strict_limits_app.test_client()
    remote = address()
    for _ in range(2):
        problem(client.post("/users", json={"name": "x"}, environ_base={"REMOTE_ADDR": remote}), 422)
    problem(sign_up(client, remote=remote), 429)


def test_failed_logins_are_limited_per_account_whatever_the_address(strict_limits_app, customer):
    client = strict_limits_app.test_client()
    for _ in range(3):
        problem(log_in(client, customer.email, "wrong password", remote=address()), 401)
    # The fourth guess from yet another address, even with the right password, is refused.
    problem(log_in(client, customer.email, remote=address()), 429)
    # Changing the case of the address does not make it another account.
    problem(log_in(client, customer.email.upper(), remote=address()), 429)


def test_successful_logins_do_not_use_up_the_account_limit(strict_limits_app, customer):
    client = strict_limits_app.test_client()
    assert [log_in(client, customer.email).status_code for _ in range(5)] == [200] * 5


# ---- Medium: a stolen token cannot change the password ------------------------------------------


def test_changing_ones_own_password_needs_the_current_one(client, customer, token_for):
    headers = token_for(customer)
    body = problem(
        client.patch(f"/users/{customer.id}", json={"password": "new-password-1"}, headers=headers), 422
    )
    assert "currentPassword" in body["errors"]
    problem(
        client.patch(
            f"/users/{customer.id}",
            json={"password": "new-password-1", "currentPassword": "not the password"},
            headers=headers,
        ),
        403,
    )
    # Nothing changed: the old token still works and the old password still logs in.
    assert client.get(f"/users/{customer.id}", headers=headers).status_code == 200
    assert log_in(client, customer.email).status_code == 200
    ok = client.patch(
        f"/users/{customer.id}",
        json={"password": "new-password-1", "currentPassword": PASSWORD},
        headers=headers,
    )
    assert ok.status_code == 200, ok.get_json()
    assert log_in(client, customer.email, "new-password-1").status_code == 200


def test_an_admin_sets_another_accounts_password_without_it(client, customer, admin, token_for):
    response = client.patch(
        f"/users/{customer.id}", json={"password": "reset-by-admin"}, headers=token_for(admin)
    )
    assert response.status_code == 200, response.get_json()
    assert log_in(client, customer.email, "reset-by-admin").status_code == 200


def test_current_password_alone_is_422(client, customer, token_for):
    body = problem(
        client.patch(
            f"/users/{customer.id}", json={"currentPassword": PASSWORD}, headers=token_for(customer)
        ),
        422,
    )
    assert "currentPassword" in body["errors"]


# ---- Low: text that cannot be stored is 422, never 500 ------------------------------------------


def test_a_lone_surrogate_in_a_login_email_is_422(client):
    body = problem(raw_json(client, "POST", "/auth/token", '{"email": "\\ud800@x.io", "password": "x"}'), 422)
    assert "email" in body["errors"]


def test_a_lone_surrogate_in_a_sign_up_name_is_422_and_creates_nothing(app, client):
    text = (
        '{"name": "A\\udfff", "email": "surrogate@example.com", "password": "long enough!", '
        '"address": {"line1": "1 Main St", "city": "X", "postalCode": "1", "country": "US"}}'
    )
    body = problem(raw_json(client, "POST", "/users", text), 422)
    assert "name" in body["errors"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 0


def test_a_lone_surrogate_nested_in_an_address_is_422_naming_the_field(client, customer, token_for):
    text = '{"address": {"line1": "\\ud83d", "city": "X", "postalCode": "1", "country": "US"}}'
    body = problem(raw_json(client, "PATCH", f"/users/{customer.id}", text, token_for(customer)), 422)
    assert "line1" in body["errors"]["address"]


def test_a_nul_in_a_product_description_is_422(client, admin, token_for):
    text = '{"productName": "P", "description": "a\\u0000b", "price": 1, "stock": 1}'
    body = problem(raw_json(client, "POST", "/products", text, token_for(admin)), 422)
    assert "description" in body["errors"]


# ---- Low: one case-folding rule for e-mail addresses --------------------------------------------


def test_an_address_with_a_dotted_capital_i_logs_in_as_typed(client):
    assert sign_up(client, email="İnci@example.com").status_code == 201
    assert log_in(client, "İnci@example.com").status_code == 200


def test_addresses_that_fold_alike_are_one_account(client):
    assert sign_up(client, email="STRASSE@example.com").status_code == 201
    problem(sign_up(client, email="straße@example.com"), 409)
    assert log_in(client, "strasse@EXAMPLE.com").status_code == 200


# ---- Low: a price changed between cart and checkout ---------------------------------------------


@pytest.fixture
def cart_with_a_product(app, client, customer, token_for):
    headers = token_for(customer)
    with app.app_context():
        product_id = make_product(db.session, price="10.00", stock=5).id
    response = client.post(
        f"/cart/{customer.id}/add", json={"productId": str(product_id), "quantity": 2}, headers=headers
    )
    assert response.status_code == 201
    return product_id, response.get_json()["cart"]["cartId"], headers


def test_checkout_with_a_stale_expected_total_is_409_and_changes_nothing(
    app, client, customer, cart_with_a_product
):
    product_id, cart_id, headers = cart_with_a_product
    with app.app_context():
        db.session.execute(update(Product).where(Product.id == product_id).values(price=Decimal("12.00")))
        db.session.commit()
    body = {"userId": str(customer.id), "cartId": cart_id, "expectedTotal": 20.00}
    response = client.post("/orders", json=body, headers={**headers, "Idempotency-Key": "k-total"})
    result = problem(response, 409)
    assert result["expectedTotal"] == 20.0
    assert result["totalAmount"] == 24.0
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Order)) == 0
        assert db.session.get(Product, product_id).stock == 5
        assert db.session.scalar(select(func.count()).select_from(CartItem)) == 1
    # The key was not used up: the same key with the right total places the order.
    body["expectedTotal"] = 24.00
    placed = client.post("/orders", json=body, headers={**headers, "Idempotency-Key": "k-total-2"})
    assert placed.status_code == 201, placed.get_json()
    assert placed.get_json()["totalAmount"] == 24.0


def test_checkout_with_the_right_expected_total_places_the_order(client, customer, cart_with_a_product):
    _, cart_id, headers = cart_with_a_product
    response = client.post(
        "/orders", json={"userId": str(customer.id), "cartId": cart_id, "expectedTotal": 20}, headers=headers
    )
    assert response.status_code == 201, response.get_json()


# ---- Info: /metrics, forwarding headers, minimum price ------------------------------------------


@pytest.fixture
def metrics_app(database_url, redis_url, app) -> Iterator[Flask]:
    yield make_app(database_url, redis_url, METRICS_TOKEN="scrape-token-0123456789")
    limiter.init_app(app)


def test_metrics_need_the_token_when_one_is_set(metrics_app):
    client = metrics_app.test_client()
    problem(client.get("/metrics"), 401)
    problem(client.get("/metrics", headers={"Authorization": "Bearer wrong"}), 401)
    ok = client.get("/metrics", headers={"Authorization": "Bearer scrape-token-0123456789"})
    assert ok.status_code == 200
    assert b"oms_" in ok.data


def test_metrics_stay_open_without_a_token_in_development(client):
    assert client.get("/metrics").status_code == 200


@pytest.fixture
def proxied_app(database_url, redis_url, app) -> Iterator[Flask]:
    yield make_app(database_url, redis_url, TRUSTED_PROXY_COUNT=1, SIGNUP_RATE_LIMIT="1/hour")
    limiter.init_app(app)


def test_behind_one_trusted_proxy_the_client_address_comes_from_x_forwarded_for(proxied_app):
    client = proxied_app.test_client()
    proxy = address()

    def via_proxy(client_address):
        return client.post(
            "/users",
            json={"name": "x"},
            environ_base={"REMOTE_ADDR": proxy},
            headers={"X-Forwarded-For": client_address},
        )

    first, second = address(), address()
    problem(via_proxy(first), 422)
    problem(via_proxy(first), 429)
    problem(via_proxy(second), 422)  # another client behind the same proxy has its own budget


@pytest.fixture
def one_signup_app(database_url, redis_url, app) -> Iterator[Flask]:
    yield make_app(database_url, redis_url, SIGNUP_RATE_LIMIT="1/hour")
    limiter.init_app(app)


def test_without_a_trusted_proxy_x_forwarded_for_is_ignored(one_signup_app):
    client = one_signup_app.test_client()
    remote = address()

    def spoofing(claimed):
        return client.post(
            "/users",
            json={"name": "x"},
            environ_base={"REMOTE_ADDR": remote},
            headers={"X-Forwarded-For": claimed},
        )

    problem(spoofing(address()), 422)
    problem(spoofing(address()), 429)  # a new claimed address does not buy a new budget


@pytest.mark.parametrize("price", [0, 0.001, -1])
def test_a_price_below_one_cent_is_422(client, admin, token_for, price):
    body = {"productName": "Free", "description": "", "price": price, "stock": 1}
    errors = problem(client.post("/products", json=body, headers=token_for(admin)), 422)["errors"]
    assert "price" in errors


def test_a_price_of_one_cent_is_accepted_and_cannot_be_lowered_to_zero(client, admin, token_for):
    headers = token_for(admin)
    created = client.post(
        "/products",
        json={"productName": "Cheap", "description": "", "price": 0.01, "stock": 1},
        headers=headers,
    )
    assert created.status_code == 201, created.get_json()
    product_id = created.get_json()["productId"]
    problem(client.patch(f"/products/{product_id}", json={"price": 0}, headers=headers), 422)
