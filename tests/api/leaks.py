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


def internal_fields(body: Any, path: str = "$") -> list[str]:
    """JSON paths of internal keys and secret-looking values in ``body``."""
    found: list[str] = []
    if isinstance(body, dict):
        for key, value in body.items():
            here = f"{path}.{key}"
            if re.sub(r"[_\-]", "", str(key)).lower() in INTERNAL_KEYS:
                found.append(here)
            found.extend(internal_fields(value, here))
    elif isinstance(body, list):
        for index, value in enumerate(body):
            found.extend(internal_fields(value, f"{path}[{index}]"))
    elif isinstance(body, str) and SECRET_VALUES.search(body):
        found.append(f"{path} = {body[:40]!r}")
    return found
