"""SPEC §5.6: admins list accounts (``GET /users?q&role&page&pageSize``) and change roles
(``PATCH /users/{userId}`` with ``role``, from an admin only); the last admin cannot step down."""

from __future__ import annotations

import threading

from app.domain.users import User
from app.extensions import db


def role_of(app, user_id) -> str:
    with app.app_context():
        return str(db.session.get(User, user_id).role)


def test_admins_search_by_name_or_email_any_case_newest_first(client, admin, make_user, token_for):
    ada = make_user(email="Ada.Lovelace@Example.com", name="Ada Lovelace")
    grace = make_user(email="grace@navy.example", name="Grace Hopper")
    make_user(role="admin", email="root@example.org", name="Root")
    get = lambda q: client.get(f"/users{q}", headers=token_for(admin)).get_json()  # noqa: E731

    assert [u["userId"] for u in get("?q=LOVELACE")["items"]] == [str(ada.id)]
    assert [u["userId"] for u in get("?q=navy.EXAMPLE")["items"]] == [str(grace.id)]
    everyone = get("?pageSize=100")
    assert everyone["totalItems"] == 4
    assert [u["createdAt"] for u in everyone["items"]] == sorted(
        (u["createdAt"] for u in everyone["items"]), reverse=True
    )
    admins = get("?role=admin")
    assert {u["email"] for u in admins["items"]} == {admin.email, "root@example.org"}
    assert all(u["role"] == "admin" for u in admins["items"])
    paged = get("?pageSize=3&page=2")
    assert (paged["page"], paged["pageSize"], paged["totalPages"], len(paged["items"])) == (2, 3, 2, 1)


def test_like_wildcards_in_the_search_are_taken_literally(client, admin, make_user, token_for):
    make_user(name="100% cotton")
    make_user(name="1000 cottons")
    body = client.get("/users?q=100%25", headers=token_for(admin)).get_json()
    assert [u["name"] for u in body["items"]] == ["100% cotton"]
    assert client.get("/users?q=_", headers=token_for(admin)).get_json()["totalItems"] == 0


def test_erased_accounts_are_not_listed(client, admin, customer, token_for):
    assert client.delete(f"/users/{customer.id}", headers=token_for(customer)).status_code == 204
    body = client.get("/users", headers=token_for(admin)).get_json()
    assert [u["userId"] for u in body["items"]] == [str(admin.id)]


def test_bad_filters_are_422_and_customers_get_403(client, admin, customer, token_for):
    assert client.get("/users?role=superuser", headers=token_for(admin)).status_code == 422
    assert client.get("/users?pageSize=101", headers=token_for(admin)).status_code == 422
    assert client.get("/users", headers=token_for(customer)).status_code == 403
    assert client.get("/users").status_code == 401


def test_an_admin_promotes_a_customer_who_then_acts_as_an_admin(app, client, admin, customer, token_for):
    customer_token = token_for(customer)  # issued while a customer
    response = client.patch(f"/users/{customer.id}", json={"role": "admin"}, headers=token_for(admin))
    assert response.status_code == 200 and response.get_json()["role"] == "admin"
    # The role is read from the database at every request: the same token now opens /admin.
    assert client.get("/admin/features", headers=customer_token).status_code == 200
    demoted = client.patch(f"/users/{customer.id}", json={"role": "customer"}, headers=token_for(admin))
    assert demoted.status_code == 200
    assert client.get("/admin/features", headers=customer_token).status_code == 403


def test_a_customer_sending_role_gets_422_and_nothing_changes(app, client, customer, token_for):
    response = client.patch(
        f"/users/{customer.id}", json={"role": "admin", "name": "Mallory"}, headers=token_for(customer)
    )
    assert response.status_code == 422
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert "role" in response.get_json()["errors"]
    assert role_of(app, customer.id) == "customer"
    assert client.get(f"/users/{customer.id}", headers=token_for(customer)).get_json()["name"] != "Mallory"


def test_an_unknown_role_is_422(client, admin, customer, token_for):
    response = client.patch(f"/users/{customer.id}", json={"role": "root"}, headers=token_for(admin))
    assert response.status_code == 422


def test_the_last_admin_cannot_step_down(app, client, admin, token_for):
    response = client.patch(f"/users/{admin.id}", json={"role": "customer"}, headers=token_for(admin))
    assert response.status_code == 409
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert role_of(app, admin.id) == "admin"


def test_two_admins_demoting_each_other_at_once_leave_one_admin(app, make_user, token_for):
    first, second = make_user("admin"), make_user("admin")
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def demote(actor, target) -> None:
        headers = token_for(actor)
        with app.test_client() as client:
            barrier.wait()
            statuses.append(
                client.patch(f"/users/{target.id}", json={"role": "customer"}, headers=headers).status_code
            )

    threads = [
        threading.Thread(target=demote, args=(first, second)),
        threading.Thread(target=demote, args=(second, first)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    # One demotion wins. The loser then either finds the other admin the last one (409), or is
    # already a customer when its request is authorised: another account is then 404 to it.
    assert sorted(statuses)[0] == 200 and sorted(statuses)[1] in (404, 409)
    assert sorted([role_of(app, first.id), role_of(app, second.id)]) == ["admin", "customer"]
