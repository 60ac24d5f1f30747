"""What no response body may ever contain: secrets and internal fields (OWASP API3).

Used by the property-level tests' crawl and by the fuzzer, so every JSON body either of them sees
is scanned.
"""

from __future__ import annotations

import re
from typing import Any

# Compared after lower-casing and dropping "_" and "-": passwordHash, password_hash, token-version …
INTERNAL_KEYS = {
    "password",
    "passwordhash",
    "hash",
    "tokenversion",
    "tv",
    "deletedat",
    "paymenttoken",
    "requesthash",
    "idempotencykey",
    "secret",
    "secretkey",
    "jwtsecretkey",
    "stripeapikey",
    "apikey",
}
SECRET_VALUES = re.compile(r"\$argon2|sk_(test|live)_|-----BEGIN")
# The one deliberate exception (SPEC §5.4): a webhook endpoint's signing secret, shown once, at the
# top level of the answer to its creation and to a rotation.
SHOWN_ONCE = {("POST", "/admin/webhooks"), ("POST", "/admin/webhooks/{}/rotate-secret")}


def allowed_top_level(method: str, path_shape: str) -> frozenset[str]:
    """Keys that operation may answer at the top level (``path_shape``: ids as ``{}``)."""
    return frozenset({"secret"}) if (method.upper(), path_shape) in SHOWN_ONCE else frozenset()


def internal_fields(
    body: Any, path: str = "$", keys_are_field_names: bool = False, allowed: frozenset[str] = frozenset()
) -> list[str]:
    """JSON paths of internal keys and secret-looking values in ``body``.

    The ``errors`` of a problem body are keyed by the names of the fields the client sent (a
    ``password`` that failed validation): there only the values are checked.
    """
    found: list[str] = []
    if isinstance(body, dict):
        is_problem = path == "$" and "status" in body and "type" in body
        for key, value in body.items():
            here = f"{path}.{key}"
            if path == "$" and key in allowed:
                continue
            if not keys_are_field_names and re.sub(r"[_\-]", "", str(key)).lower() in INTERNAL_KEYS:
                found.append(here)
            nested_names = keys_are_field_names or (is_problem and key == "errors")
            found.extend(internal_fields(value, here, nested_names))
    elif isinstance(body, list):
        for index, value in enumerate(body):
            found.extend(internal_fields(value, f"{path}[{index}]", keys_are_field_names))
    elif isinstance(body, str) and SECRET_VALUES.search(body):
        found.append(f"{path} = {body[:40]!r}")
    return found
