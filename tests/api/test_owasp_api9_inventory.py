"""OWASP API9:2023 (improper inventory management): the OpenAPI document is the whole API.

Every route the app serves is in ``/openapi.json`` and every documented operation is served
(only the document itself and its Swagger UI are left out); each operation's documented security
matches the access policy it is enforced with; each has a summary.
"""

from __future__ import annotations

import re

from app.api.security import PUBLIC, policy_of

DOCUMENTATION = {"/openapi.json", "/docs", "/docs/<path:filename>", "/docs/assets/<path:filename>"}


def shape(path: str) -> str:
    """``/users/<uuid:user_id>`` and ``/users/{userId}`` both become ``/users/{}``."""
    return re.sub(r"<[^>]+>|\{[^}]+\}", "{}", path)


def served(app) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.rule in DOCUMENTATION or rule.endpoint == "static":
            continue
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            routes.add((method, shape(rule.rule)))
    return routes


def documented(spec) -> set[tuple[str, str]]:
    return {
        (method.upper(), shape(path))
        for path, operations in spec["paths"].items()
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    }


def test_every_served_route_is_documented_and_every_documented_one_is_served(app, client):
    spec = client.get("/openapi.json").get_json()
    assert served(app) - documented(spec) == set(), "served but undocumented"
    assert documented(spec) - served(app) == set(), "documented but not served"


def test_no_static_file_route_is_served(app, client):
    assert not [rule.rule for rule in app.url_map.iter_rules() if rule.endpoint == "static"]
    assert client.get("/static/app.py").status_code == 404


def test_documented_security_matches_the_enforced_policy(app, client):
    spec = client.get("/openapi.json").get_json()
    endpoints = {
        (method, shape(rule.rule)): rule.endpoint
        for rule in app.url_map.iter_rules()
        for method in rule.methods or set()
    }
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            policy = policy_of(app, endpoints[(method.upper(), shape(path))], method.upper())
            assert policy is not None, (method, path)
            needs_token = policy.kind != PUBLIC
            assert bool(operation.get("security")) == needs_token, (method, path, policy)
            if needs_token:
                assert "401" in operation["responses"], (method, path)


def test_every_operation_has_a_summary(client):
    spec = client.get("/openapi.json").get_json()
    missing = [
        f"{method.upper()} {path}"
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if isinstance(operation, dict) and method != "parameters" and not operation.get("summary")
    ]
    assert missing == []
