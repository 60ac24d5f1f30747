"""OpenAPI: the Api subclass whose documented errors are problem+json, and shared schemas."""

from __future__ import annotations

import http
import re
from typing import Any

import marshmallow as ma
from apispec import BasePlugin
from flask_smorest import Api
from flask_smorest.utils import prepare_response

from app.domain import catalogue, notifications, operations, orders, payments, users

PROBLEM_JSON = "application/problem+json"

# Named enum components: a field marked ``metadata={"enum_component": NAME}`` is documented as
# ``$ref: '#/components/schemas/NAME'`` (one definition, one generated enum class per name), never as
# an inline enum that each generator names after its parent (and then finds conflicting).
# The values come from where the domain defines them.
ENUM_COMPONENTS: dict[str, tuple[str, ...]] = {
    "OrderStatus": orders.ORDER_STATUSES,
    "CancelReason": (
        orders.CANCELLED_BY_CUSTOMER,
        orders.CANCELLED_BY_ADMIN,
        orders.CANCELLED_BY_SYSTEM,
        orders.PAYMENT_FAILED,
        orders.PAYMENT_TIMEOUT,
        orders.PAYMENT_REFUNDED,
    ),
    "PaymentStatus": payments.PAYMENT_STATUSES,
    "RefundStatus": tuple(payments.RefundStatus),
    "PaymentMethod": payments.PAYMENT_METHODS,
    "NotificationStatus": (notifications.N_PENDING, notifications.N_SENT, notifications.N_FAILED),
    "StockMovementReason": catalogue.MOVEMENT_REASONS,
    "AdminStockMovementReason": catalogue.ADMIN_MOVEMENT_REASONS,
    "ReconciliationStatus": (operations.RUNNING, operations.R_COMPLETED, operations.R_FAILED),
    "Role": users.ROLES,
}


def enum_ref(name: str) -> dict[str, str]:
    assert name in ENUM_COMPONENTS, name
    return {"$ref": f"#/components/schemas/{name}"}


def named_enums_and_nullable_refs(
    self: Any, field: ma.fields.Field, ret: dict[str, Any], **kwargs: Any
) -> dict:
    """apispec attribute function (runs after the built-in ones, on every property and parameter).

    - a field with ``enum_component`` becomes a reference to that component (a nullable one, or
      one with a default, the standard OpenAPI 3.0 form ``allOf: [$ref]`` beside ``nullable``/``default``);
    - a nullable nested object becomes ``allOf: [$ref], nullable: true`` instead of apispec's
      ``anyOf`` with a bare ``{type: object, nullable: true}``, which generators read as a second,
      anonymous model.
    """
    name = field.metadata.get("enum_component")
    if name:
        kept = {key: ret[key] for key in ("nullable", "default", "description", "readOnly") if key in ret}
        ret.clear()
        if kept:
            ret.update(allOf=[enum_ref(name)], **kept)
        else:
            ret.update(enum_ref(name))
        return {}
    any_of = ret.get("anyOf")
    if isinstance(any_of, list) and len(any_of) == 2:
        refs = [item for item in any_of if "$ref" in item]
        bare = [item for item in any_of if item == {"type": "object", "nullable": True}]
        if len(refs) == 1 and len(bare) == 1:
            del ret["anyOf"]
            ret.update(allOf=refs, nullable=True)
    return {}


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
    expectedTotal = ma.fields.Float(metadata={"description": "Checkout: the total the client expected"})
    totalAmount = ma.fields.Float(metadata={"description": "Checkout: the total at current prices"})


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
        for name, values in ENUM_COMPONENTS.items():
            self.spec.components.schema(name, {"type": "string", "enum": list(values)})
        self.ma_plugin.converter.add_attribute_function(named_enums_and_nullable_refs)  # type: ignore[union-attr]

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
