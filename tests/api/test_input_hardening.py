"""Inputs found by the fuzzer: each answered with a 4xx problem, never a 500."""

from __future__ import annotations


def test_a_nul_character_in_a_body_field_is_a_422_not_a_database_error(client):
    response = client.post("/auth/token", json={"email": "a\x00@example.com", "password": "whatever1"})
    assert response.status_code == 422
    assert response.get_json()["errors"] == {"email": ["Must not contain NUL characters."]}


def test_a_nul_character_in_a_query_parameter_is_a_422(client):
    response = client.get("/products", query_string={"q": "cup\x00"})
    assert response.status_code == 422
    assert "q" in response.get_json()["errors"]


def test_json_nested_deeper_than_the_decoder_can_go_is_a_400(client):
    depth = 200_000
    response = client.post("/users", data="[" * depth + "]" * depth, content_type="application/json")
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/problem+json"


def test_an_integer_too_long_to_decode_is_a_400(client):
    response = client.post(
        "/auth/token", data='{"email": ' + "9" * 5000 + "}", content_type="application/json"
    )
    assert response.status_code == 400


def test_a_nul_character_in_a_path_segment_is_a_400_not_a_database_error(client, admin, token_for):
    response = client.put("/admin/features/%00", json={"enabled": True}, headers=token_for(admin))
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/problem+json"
    assert "NUL" not in response.get_data(as_text=True)  # no database error text leaks
