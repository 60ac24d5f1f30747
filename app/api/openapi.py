"""OpenAPI: the Api subclass whose documented errors are problem+json, and shared schemas."""

from __future__ import annotations

import http
import re
from typing import Any

import marshmallow as ma
from apispec import BasePlugin
from flask_smorest import Api
from flask_smorest.utils import prepare_response

PROBLEM_JSON = "application/problem+json"


class ProblemSchema(ma.Schema):
    """RFC 9457 problem details."""

    class Meta:
        unknown = ma.INCLUDE

    type = ma.fields.String(required=True, metadata={"example": "urn:oms:problem:not-found"})
    title = ma.fields.String(required=True)
    status = ma.fields.Integer(required=True)
    detail = ma.fields.String(required=True)
    requestId = ma.fields.String()
    errors = ma.fields.Raw(
        metadata={
            "description": "Validation: field name → messages (nested fields nested). "
            "Insufficient stock: a list of {productId, requested, available}."
        }
    )
    currentVersion = ma.fields.Integer(metadata={"description": "On version conflicts"})


# Responses every operation can produce, whatever it does.
COMMON_ERRORS = {
    "405": "METHOD_NOT_ALLOWED",
    "429": "TOO_MANY_REQUESTS",
    "500": "INTERNAL_SERVER_ERROR",
    "503": "SERVICE_UNAVAILABLE",
}
# Responses of operations that read a body or parameters.
INPUT_ERRORS = {"400": "BAD_REQUEST", "413": "REQUEST_ENTITY_TOO_LARGE", "422": "UNPROCESSABLE_ENTITY"}


def response_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class ProblemResponsesPlugin(BasePlugin):
    """Adds the errors any operation may answer, so the document lists every real response.

    It also names path parameters as the API names fields (``{userId}``, not Flask's
    ``{user_id}``), so the document's paths read exactly as the product specification's.
    """

    def path_helper(
        self,
        path: str | None = None,
        operations: dict[str, Any] | None = None,
        parameters: list[Any] | None = None,
        **kwargs: Any,
    ) -> str | None:
        if not path:
            return None
        for parameter in parameters or []:
            if isinstance(parameter, dict) and parameter.get("in") == "path":
                parameter["name"] = camel(parameter["name"])
        for operation in (operations or {}).values():
            for parameter in operation.get("parameters", []) if isinstance(operation, dict) else []:
                if isinstance(parameter, dict) and parameter.get("in") == "path":
                    parameter["name"] = camel(parameter["name"])
        return re.sub(r"\{([A-Za-z0-9_]+)\}", lambda m: "{" + camel(m.group(1)) + "}", path)

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        for operation in (operations or {}).values():
            responses = operation.setdefault("responses", {})
            responses.pop("default", None)
            wanted = dict(COMMON_ERRORS)
            if operation.get("requestBody") or operation.get("parameters") or (path and "{" in path):
                wanted.update(INPUT_ERRORS)
            if path and "{" in path:
                wanted["404"] = "NOT_FOUND"
            for status, name in wanted.items():
                responses.setdefault(status, response_ref(name))


class OmsApi(Api):
    """flask-smorest's Api with problem+json error documentation, and Swagger UI served locally."""

    ERROR_SCHEMA = ProblemSchema
    DEFAULT_ERROR_RESPONSE_NAME = None  # type: ignore[assignment]

    def init_app(self, app: Any, *args: Any, **kwargs: Any) -> None:
        from app.api import docs

        super().init_app(app, *args, **kwargs)
        app.register_blueprint(docs.blp)

    def _register_responses(self) -> None:  # type: ignore[no-untyped-def]
        for status in http.HTTPStatus:
            if status < 400:
                continue
            response: dict[str, Any] = {"description": status.phrase, "schema": self.ERROR_SCHEMA}
            prepare_response(response, self.spec, PROBLEM_JSON)
            if status == 429:
                response["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
            if status == 503:
                response["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
            if status == 405:
                response["headers"] = {"Allow": {"schema": {"type": "string"}}}
            self.spec.components.response(status.name, response)
