"""SPEC §4 Users: sign-up, profile, update and deletion (erasure)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from app.api.errors import PROBLEM_JSON
from app.domain.carts import Cart, CartItem
from app.domain.catalogue import Product
from app.domain.orders import Order
from app.domain.payments import Payment
from app.domain.users import User
from app.extensions import db

ADDRESS = {"line1": "221B Baker Street", "city": "London", "postalCode": "NW1 6XE", "country": "GB"}
PASSWORD = "s3cret-passphrase"


def problem(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM_JSON
    body = response.get_json(force=True)
    assert body["status"] == status
    return body


def sign_up(client, **overrides):
    body = {
        "name": "Ada Lovelace",
        "email": f"ada-{uuid.uuid4().hex[:8]}@example.com",
        "password": PASSWORD,
        "address": ADDRESS,
    }
    body.update(overrides)
    return client.post("/users", json=body)


def login(client, email, password=PASSWORD):
    return client.post("/auth/token", json={"email": email, "password": password})


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def account(client):
    """A signed-up customer: (profile body, auth headers)."""
    created = sign_up(client)
    assert created.status_code == 201
    profile = created.get_json()
    token = login(client, profile["email"]).get_json()["accessToken"]
    return profile, bearer(token)


# ---- sign-up ---------------------------------------------------------------------------------


def test_sign_up_returns_201_with_the_profile_and_its_location(client):
    response = sign_up(client, email="grace@example.com")
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == {"userId", "name", "email", "address", "role", "createdAt", "emailVerified"}
    assert body["role"] == "customer"
    assert body["emailVerified"] is False
    assert body["name"] == "Ada Lovelace"
    assert body["email"] == "grace@example.com"
    assert body["address"] == ADDRESS
    uuid.UUID(body["userId"])
    assert response.headers["Location"].endswith(f"/users/{body['userId']}")


def test_sign_up_stores_an_argon2id_hash_never_the_password(client, app_ctx):
    body = sign_up(client).get_json()
    stored = db.session.get(User, uuid.UUID(body["userId"]))
    assert stored.password_hash.startswith("$argon2id$")
    assert PASSWORD not in stored.password_hash
    assert stored.role == "customer"


def test_no_response_ever_contains_the_password_or_its_hash(client, account):
    profile, headers = account
    responses = [
        client.get(f"/users/{profile['userId']}", headers=headers),
        client.patch(f"/users/{profile['userId']}", json={"name": "New"}, headers=headers),
        sign_up(client),
    ]
    for response in responses:
        text = response.get_data(as_text=True)
        assert "password" not in text.lower()
        assert "argon2" not in text
        assert PASSWORD not in text


def test_duplicate_email_is_409_whatever_its_case(client):
    assert sign_up(client, email="Alan.Turing@Example.com").status_code == 201
    body = problem(sign_up(client, email="alan.turing@EXAMPLE.COM"), 409)
    assert body["type"].endswith("duplicate-email")


def test_password_shorter_than_8_characters_is_422(client):
    body = problem(sign_up(client, password="1234567"), 422)
    assert "password" in body["errors"]


def test_password_of_exactly_8_characters_is_accepted(client):
    assert sign_up(client, password="12345678").status_code == 201


def test_absurdly_long_password_is_422(client):
    assert "password" in problem(sign_up(client, password="x" * 257), 422)["errors"]


@pytest.mark.parametrize("email", ["not-an-email", "a@b", "two@@example.com", "", "x" * 320 + "@example.com"])
def test_invalid_email_is_422(client, email):
    assert "email" in problem(sign_up(client, email=email), 422)["errors"]


@pytest.mark.parametrize("country", ["us", "USA", "XX", "", 12])
def test_address_country_must_be_an_upper_case_iso_alpha_2_code(client, country):
    body = problem(sign_up(client, address={**ADDRESS, "country": country}), 422)
    assert "country" in body["errors"]["address"]


def test_address_line2_is_optional_and_kept(client):
    body = sign_up(client, address={**ADDRESS, "line2": "Flat 2"}).get_json()
    assert body["address"]["line2"] == "Flat 2"


@pytest.mark.parametrize("missing", ["line1", "city", "postalCode", "country"])
def test_address_requires_its_fields(client, missing):
    address = {k: v for k, v in ADDRESS.items() if k != missing}
    assert missing in problem(sign_up(client, address=address), 422)["errors"]["address"]


@pytest.mark.parametrize("missing", ["name", "email", "password", "address"])
def test_sign_up_requires_every_field(client, missing):
    body = {"name": "N", "email": "n@example.com", "password": PASSWORD, "address": ADDRESS}
    del body[missing]
    assert missing in problem(client.post("/users", json=body), 422)["errors"]


@pytest.mark.parametrize(
    "field, value",
    [
        ("role", "admin"),
        ("userId", "0190a1b2-0000-7000-8000-000000000001"),
        ("createdAt", "2020-01-01T00:00:00Z"),
        ("tokenVersion", 9),
    ],
)
def test_sign_up_rejects_fields_the_client_may_not_set(client, field, value):
    assert field in problem(sign_up(client, **{field: value}), 422)["errors"]


def test_unknown_address_field_is_422(client):
    body = problem(sign_up(client, address={**ADDRESS, "state": "CA"}), 422)
    assert "state" in body["errors"]["address"]


def test_malformed_json_is_400(client):
    problem(client.post("/users", data="{nope", content_type="application/json"), 400)


# ---- profile ---------------------------------------------------------------------------------


def test_owner_views_their_profile(client, account):
    profile, headers = account
    response = client.get(f"/users/{profile['userId']}", headers=headers)
    assert response.status_code == 200
    assert response.get_json() == profile


def test_admin_views_any_profile(client, account, admin, token_for):
    profile, _ = account
    assert client.get(f"/users/{profile['userId']}", headers=token_for(admin)).get_json() == profile


def test_another_customer_gets_404_for_a_profile(client, account, customer, token_for):
    profile, _ = account
    problem(client.get(f"/users/{profile['userId']}", headers=token_for(customer)), 404)


def test_profile_without_a_token_is_401(client, account):
    profile, _ = account
    response = client.get(f"/users/{profile['userId']}")
    problem(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_unknown_and_malformed_user_ids_are_404(client, admin, token_for):
    problem(client.get(f"/users/{uuid.uuid4()}", headers=token_for(admin)), 404)
    problem(client.get("/users/not-a-uuid", headers=token_for(admin)), 404)


# ---- update ----------------------------------------------------------------------------------


def test_owner_changes_name_and_address(client, account):
    profile, headers = account
    new_address = {"line1": "1 Rue de Rivoli", "city": "Paris", "postalCode": "75001", "country": "FR"}
    response = client.patch(
        f"/users/{profile['userId']}", json={"name": "Ada King", "address": new_address}, headers=headers
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["name"] == "Ada King"
    assert body["address"] == new_address
    assert body["email"] == profile["email"]
    assert client.get(f"/users/{profile['userId']}", headers=headers).get_json() == body


def test_admin_updates_another_users_profile(client, account, admin, token_for):
    profile, _ = account
    response = client.patch(f"/users/{profile['userId']}", json={"name": "Renamed"}, headers=token_for(admin))
    assert response.status_code == 200
    assert response.get_json()["name"] == "Renamed"


def test_another_customer_cannot_update_a_profile(client, account, customer, token_for):
    profile, _ = account
    problem(client.patch(f"/users/{profile['userId']}", json={"name": "X"}, headers=token_for(customer)), 404)


@pytest.mark.parametrize(
    "field, value",
    [
        ("role", "admin"),
        ("email", "new@example.com"),
        ("userId", "0190a1b2-0000-7000-8000-000000000001"),
        ("createdAt", "2020-01-01"),
    ],
)
def test_update_rejects_fields_that_cannot_be_changed(client, account, app_ctx, field, value):
    profile, headers = account
    body = problem(client.patch(f"/users/{profile['userId']}", json={field: value}, headers=headers), 422)
    assert field in body["errors"]
    assert db.session.get(User, uuid.UUID(profile["userId"])).role == "customer"


def test_update_validates_password_and_address(client, account):
    profile, headers = account
    body = problem(
        client.patch(
            f"/users/{profile['userId']}",
            json={"password": "short", "address": {**ADDRESS, "country": "ZZ"}},
            headers=headers,
        ),
        422,
    )
    assert "password" in body["errors"]
    assert "country" in body["errors"]["address"]


def test_password_change_revokes_earlier_tokens_and_the_new_password_works(client, account):
    profile, headers = account
    response = client.patch(
        f"/users/{profile['userId']}",
        json={"password": "a-brand-new-password", "currentPassword": PASSWORD},
        headers=headers,
    )
    assert response.status_code == 200
    problem(client.get(f"/users/{profile['userId']}", headers=headers), 401)
    problem(login(client, profile["email"]), 401)
    fresh = login(client, profile["email"], "a-brand-new-password").get_json()["accessToken"]
    assert client.get(f"/users/{profile['userId']}", headers=bearer(fresh)).status_code == 200


def test_name_change_keeps_tokens_valid(client, account):
    profile, headers = account
    client.patch(f"/users/{profile['userId']}", json={"name": "Still Me"}, headers=headers)
    assert client.get(f"/users/{profile['userId']}", headers=headers).status_code == 200


# ---- deletion --------------------------------------------------------------------------------


def _give_cart_and_paid_order(user_id: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    product = Product(name="Mug", description="", price=5, stock=3)
    db.session.add(product)
    db.session.flush()
    cart = Cart(user_id=user_id)
    db.session.add(cart)
    db.session.flush()
    db.session.add(CartItem(cart_id=cart.id, product_id=product.id, quantity=2))
    order = Order(user_id=user_id, status="PLACED", total_amount=5, currency="USD")
    db.session.add(order)
    db.session.flush()
    db.session.add(
        Payment(order_id=order.id, amount=5, currency="USD", status="COMPLETED", payment_token="pm_card_visa")
    )
    db.session.commit()
    return cart.id, order.id


def test_delete_account_is_204_and_erases_personal_data(client, account, app_ctx):
    profile, headers = account
    user_id = uuid.UUID(profile["userId"])
    response = client.delete(f"/users/{user_id}", headers=headers)
    assert response.status_code == 204
    assert response.get_data() == b""
    db.session.expire_all()
    user = db.session.get(User, user_id)
    assert user.name == "Deleted user"
    assert user.email is None
    assert user.address is None
    assert user.password_hash is None
    assert user.deleted_at is not None


def test_deleted_account_cannot_log_in_and_its_tokens_die(client, account):
    profile, headers = account
    assert client.delete(f"/users/{profile['userId']}", headers=headers).status_code == 204
    problem(login(client, profile["email"]), 401)
    problem(client.get(f"/users/{profile['userId']}", headers=headers), 401)


def test_deleted_account_is_404_even_for_an_admin(client, account, admin, token_for):
    profile, headers = account
    client.delete(f"/users/{profile['userId']}", headers=headers)
    problem(client.get(f"/users/{profile['userId']}", headers=token_for(admin)), 404)
    problem(client.delete(f"/users/{profile['userId']}", headers=token_for(admin)), 404)


def test_deletion_empties_the_cart_but_keeps_orders_and_payments(client, account, app_ctx):
    profile, headers = account
    user_id = uuid.UUID(profile["userId"])
    cart_id, order_id = _give_cart_and_paid_order(user_id)
    assert client.delete(f"/users/{user_id}", headers=headers).status_code == 204
    db.session.expire_all()
    items = db.session.scalar(select(func.count()).select_from(CartItem).where(CartItem.cart_id == cart_id))
    assert items == 0
    assert db.session.get(Order, order_id).user_id == user_id
    assert db.session.scalar(select(Payment.status).where(Payment.order_id == order_id)) == "COMPLETED"


def test_the_email_of_a_deleted_account_can_sign_up_again(client, account):
    profile, headers = account
    client.delete(f"/users/{profile['userId']}", headers=headers)
    again = sign_up(client, email=profile["email"])
    assert again.status_code == 201
    assert again.get_json()["userId"] != profile["userId"]


def test_admin_deletes_another_account(client, account, admin, token_for):
    profile, headers = account
    assert client.delete(f"/users/{profile['userId']}", headers=token_for(admin)).status_code == 204
    problem(client.get(f"/users/{profile['userId']}", headers=headers), 401)


def test_another_customer_cannot_delete_an_account(client, account, customer, token_for):
    profile, headers = account
    problem(client.delete(f"/users/{profile['userId']}", headers=token_for(customer)), 404)
    assert client.get(f"/users/{profile['userId']}", headers=headers).status_code == 200
