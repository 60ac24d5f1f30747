"""The HTTP side of idempotent endpoints: the ``Idempotency-Key`` header in, a replayed answer out.

An endpoint that creates something passes ``idempotent(actor, schema, status)`` to its use case
(which runs through ``app.services.idempotency.run_idempotently``) and answers a ``Replay`` with
``replayed(...)``; everything else is the normal ``@blp.response``, or ``first_answer(...)``: the
answer stored under the key, sent as it is (rendered once, not again by the response schema).
Keys are scoped to the user.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import marshmallow as ma
from flask import Response, g, request, url_for

from app.domain.actors import Actor
from app.domain.errors import ValidationFailed
from app.services.idempotency import Idempotent, KeyUse, StoredResponse

T = TypeVar("T")

IDEMPOTENCY_KEY = re.compile(r"^[\x20-\x7e]{1,255}$")
IDEMPOTENCY_DOC = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": (
        "1 to 255 printable ASCII characters, scoped to the user and kept 24 h. A repeat with the same "
        "key and body returns the first response with `Idempotent-Replayed: true` and creates nothing; "
        "the same key with another body → 422; a repeat while the first is still running → 409. Only "
        "a request that created its order is remembered: a failed one leaves the key free."
    ),
}


def key_use(scope: uuid.UUID) -> KeyUse | None:
    """The request's Idempotency-Key (checked: 422 if invalid), with the hash of the request
    (method, path, canonical JSON body); None without the header."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not IDEMPOTENCY_KEY.match(key):
        raise ValidationFailed(
            "The Idempotency-Key header is invalid",
            {"Idempotency-Key": ["Must be 1 to 255 printable ASCII characters."]},
        )
    canonical = json.dumps(request.get_json(silent=True), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(f"{request.method} {request.path}\n{canonical}".encode()).hexdigest()
    return KeyUse(scope=scope, key=key, request_hash=digest)


def idempotent(
    actor: Actor, schema: ma.Schema, status: int, resource_id: Callable[[T], uuid.UUID]
) -> Idempotent[T] | None:
    """The idempotent request a use case needs, or None when the client sent no key. The answer
    stored for a repeat is ``status`` with ``schema``'s rendering of the use case's result."""
    if actor.user_id is None:
        return None
    use = key_use(actor.user_id)
    if use is None:
        return None

    def respond(result: T) -> StoredResponse:
        body: dict[str, Any] = schema.dump(result)
        stored = StoredResponse(status=status, body=body, resource_id=resource_id(result))
        g._idempotent_answer = stored
        return stored

    return Idempotent(use, respond)


def first_answer(location_endpoint: str, **location_args: Any) -> Response | None:
    """The answer this request stored under its key (``respond`` rendered it in the use case's
    transaction), as the response; None when it stored none (no key)."""
    stored: StoredResponse | None = g.pop("_idempotent_answer", None)
    if stored is None:
        return None
    return _stored_answer(stored, location_endpoint, location_args)


def replayed(stored: StoredResponse, location_endpoint: str, **location_args: Any) -> Response:
    """The first answer again, as it was sent, marked as a replay; ``Location`` names the resource."""
    response = _stored_answer(stored, location_endpoint, location_args)
    response.headers["Idempotent-Replayed"] = "true"
    return response


def _stored_answer(stored: StoredResponse, location_endpoint: str, location_args: dict[str, Any]) -> Response:
    """A stored answer sent as it was stored, with ``Location`` naming the resource."""
    response = Response(json.dumps(stored.body), status=stored.status, mimetype="application/json")
    response.headers["Location"] = url_for(location_endpoint, **location_args)
    return response
