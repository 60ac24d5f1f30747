"""SPEC §4 Idempotency-Key on POST /orders: at most one order per (user, key) and request."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.domain.base import utcnow
from app.domain.catalogue import Product
from app.domain.orders import IdempotencyKey, Order
from app.extensions import db
from app.services.idempotency import purge_expired
from tests.api.test_conventions import assert_problem
from tests.shop import make_product


@pytest.fixture
def auth(customer, token_for):
    return token_for(customer)


@pytest.fixture
def apple(app_ctx):
    return make_product(db.session, price="2.50", stock=10, name="Apple").id


def fill(client, user, headers, product_id, quantity=1):
    client.post(
        f"/cart/{user.id}/add", json={"productId": str(product_id), "quantity": quantity}, headers=headers
    )
    return client.get(f"/cart/{user.id}", headers=headers).get_json()["cartId"]


def checkout(client, user, headers, cart_id, key, **extra):
    return client.post(
        "/orders",
        json={"userId": str(user.id), "cartId": cart_id, **extra},
        headers={**headers, "Idempotency-Key": key},
    )


def orders_of(user):
    return db.session.scalar(select(func.count()).select_from(Order).where(Order.user_id == user.id))


def stock(product_id):
    db.session.expire_all()
    return db.session.get(Product, product_id).stock


def test_a_repeat_returns_the_first_response_and_creates_nothing(client, customer, auth, apple):
    cart_id = fill(client, customer, auth, apple, 2)
    first = checkout(client, customer, auth, cart_id, "key-1")
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    fill(client, customer, auth, apple, 1)  # the cart changed: a replay must not look at it
    again = checkout(client, customer, auth, cart_id, "key-1")
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert again.headers["Location"] == first.headers["Location"]
    assert orders_of(customer) == 1
    assert stock(apple) == 8


def test_the_same_key_with_a_different_body_is_422(client, customer, auth, apple):
    cart_id = fill(client, customer, auth, apple)
    checkout(client, customer, auth, cart_id, "key-1")
    body = assert_problem(checkout(client, customer, auth, cart_id, "key-1", paymentMethod="PAYPAL"), 422)
    assert "Idempotency-Key" in body["errors"]
    assert orders_of(customer) == 1


def test_a_repeat_while_the_first_is_still_running_is_409(client, customer, auth, apple):
    cart_id = fill(client, customer, auth, apple)
    checkout(client, customer, auth, cart_id, "done")
    same_body_hash = db.session.get(IdempotencyKey, (customer.id, "done")).request_hash
    # a first request that claimed "running" and has not answered yet
    db.session.add(
        IdempotencyKey(
            user_id=customer.id,
            key="running",
            request_hash=same_body_hash,
            created_at=utcnow(),
            expires_at=utcnow() + timedelta(hours=24),
        )
    )
    db.session.commit()
    fill(client, customer, auth, apple)
    assert_problem(checkout(client, customer, auth, cart_id, "running"), 409)
    assert orders_of(customer) == 1


def test_an_abandoned_claim_is_taken_over(client, customer, auth, apple):
    cart_id = fill(client, customer, auth, apple)
    checkout(client, customer, auth, cart_id, "first")
    template = db.session.get(IdempotencyKey, (customer.id, "first"))
    db.session.add(
        IdempotencyKey(
            user_id=customer.id,
            key="abandoned",
            request_hash=template.request_hash,
            created_at=utcnow() - timedelta(minutes=3),
            expires_at=utcnow() + timedelta(hours=24),
        )
    )
    db.session.commit()
    fill(client, customer, auth, apple)
    assert checkout(client, customer, auth, cart_id, "abandoned").status_code == 201
    assert orders_of(customer) == 2


def test_a_failed_request_leaves_the_key_free(client, customer, auth, apple):
    cart_id = fill(client, customer, auth, apple)
    client.delete(f"/cart/{customer.id}", headers=auth)
    assert_problem(checkout(client, customer, auth, cart_id, "retry-me"), 422)  # empty cart
    fill(client, customer, auth, apple, 5)
    assert checkout(client, customer, auth, cart_id, "retry-me").status_code == 201
    assert db.session.get(IdempotencyKey, (customer.id, "retry-me")).response_status == 201


def test_an_out_of_stock_failure_leaves_the_key_free(client, customer, auth, apple, make_user, token_for):
    cart_id = fill(client, customer, auth, apple, 6)
    rival = make_user()
    rival_auth = token_for(rival)
    client.post(
        "/orders",
        json={"userId": str(rival.id), "cartId": fill(client, rival, rival_auth, apple, 5)},
        headers=rival_auth,
    )
    assert_problem(checkout(client, customer, auth, cart_id, "k"), 409)
    assert db.session.get(IdempotencyKey, (customer.id, "k")) is None
    client.put(f"/cart/{customer.id}/items/{apple}", json={"quantity": 5}, headers=auth)
    assert checkout(client, customer, auth, cart_id, "k").status_code == 201


def test_keys_are_scoped_to_their_user(client, customer, auth, apple, make_user, token_for):
    other = make_user()
    other_auth = token_for(other)
    assert checkout(client, customer, auth, fill(client, customer, auth, apple), "shared").status_code == 201
    response = checkout(client, other, other_auth, fill(client, other, other_auth, apple), "shared")
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response.headers


def test_an_expired_key_is_forgotten(client, customer, auth, apple):
    cart_id = fill(client, customer, auth, apple)
    checkout(client, customer, auth, cart_id, "old")
    row = db.session.get(IdempotencyKey, (customer.id, "old"))
    assert row.expires_at - row.created_at == timedelta(hours=24)
    row.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    fill(client, customer, auth, apple)
    response = checkout(client, customer, auth, cart_id, "old")
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response.headers
    assert orders_of(customer) == 2


def test_expired_keys_are_purged(client, customer, auth, apple):
    checkout(client, customer, auth, fill(client, customer, auth, apple), "old")
    checkout(client, customer, auth, fill(client, customer, auth, apple), "fresh")
    db.session.get(IdempotencyKey, (customer.id, "old")).expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert purge_expired() == 1
    assert db.session.scalars(select(IdempotencyKey.key)).all() == ["fresh"]


def test_the_hourly_purge_task_forgets_expired_keys(client, customer, auth, apple):
    from worker.tasks import purge_expired

    checkout(client, customer, auth, fill(client, customer, auth, apple), "old")
    db.session.get(IdempotencyKey, (customer.id, "old")).expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert purge_expired() == 1
    db.session.expire_all()
    assert db.session.scalars(select(IdempotencyKey.key)).all() == []


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there", "caf\xe9"])
def test_a_key_that_is_not_1_to_255_printable_ascii_characters_is_422(client, customer, auth, apple, key):
    cart_id = fill(client, customer, auth, apple)
    body = assert_problem(checkout(client, customer, auth, cart_id, key), 422)
    assert "Idempotency-Key" in body["errors"]
    assert orders_of(customer) == 0


def test_a_255_character_key_is_accepted(client, customer, auth, apple):
    assert checkout(client, customer, auth, fill(client, customer, auth, apple), "k" * 255).status_code == 201
