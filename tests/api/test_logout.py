"""SPEC §5.6: POST /auth/logout revokes every access token of the caller, and only theirs."""

from __future__ import annotations

from app.api.errors import PROBLEM_JSON

PASSWORD = "correct horse battery"


def login(client, email):
    response = client.post("/auth/token", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200
    return {"Authorization": f"Bearer {response.get_json()['accessToken']}"}


def test_logout_revokes_every_token_of_the_caller(client, customer, make_user):
    phone, laptop = login(client, customer.email), login(client, customer.email)
    someone_else = make_user()
    theirs = login(client, someone_else.email)

    response = client.post("/auth/logout", headers=phone)
    assert response.status_code == 204 and response.get_data() == b""

    for headers in (phone, laptop):
        response = client.get(f"/users/{customer.id}", headers=headers)
        assert response.status_code == 401 and response.mimetype == PROBLEM_JSON
    assert client.get(f"/users/{someone_else.id}", headers=theirs).status_code == 200
    # Logging in again works, and logging out twice with the old token is 401.
    assert client.get(f"/users/{customer.id}", headers=login(client, customer.email)).status_code == 200
    assert client.post("/auth/logout", headers=phone).status_code == 401


def test_logout_without_a_token_is_401(client):
    response = client.post("/auth/logout")
    assert response.status_code == 401 and response.mimetype == PROBLEM_JSON
