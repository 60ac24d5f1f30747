"""Returns: delivered units coming back within the return window, refunded at the price paid (SPEC §5.2)."""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from flask import Response, current_app, url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from app.api.idempotency import IDEMPOTENCY_DOC, idempotent, replayed
from app.api.schemas import Money, StrictSchema
from app.api.security import authenticated, current_actor
from app.api.shipments import LineSchema, _unique_products
from app.domain.returns import RETURN_DECISIONS, RETURN_REASONS, Return
from app.services import returns as service
from app.services.idempotency import Idempotent, Replay

blp = Blueprint(
    "returns",
    __name__,
    description=(
        "The owner of an order (or an admin) asks to return delivered units within RETURN_WINDOW_DAYS "
        "(default 30) of their shipment's delivery; an admin receives them (back into stock through "
        "the ledger, reason RETURN, unless restock is false) or rejects the return. Each line is "
        "refunded at the price paid. Status: REQUESTED → RECEIVED → REFUNDED (when the refund "
        "succeeds), or REQUESTED → REJECTED. Behind the `returns` feature toggle (off: 503 for "
        "requests and lists; admins still decide returns already asked for)."
    ),
)


class ReturnCreateSchema(StrictSchema):
    items = ma.fields.List(
        ma.fields.Nested(LineSchema), required=True, validate=ma.validate.Length(min=1, max=1000)
    )
    reason = ma.fields.String(
        required=True, validate=ma.validate.OneOf(RETURN_REASONS), metadata={"enum_component": "ReturnReason"}
    )
    note = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=2000))

    @ma.validates_schema
    def _lines_unique(self, data: dict[str, Any], **kwargs: Any) -> None:
        _unique_products(data.get("items") or [])


class ReturnItemSchema(ma.Schema):
    productId = ma.fields.UUID(attribute="product_id", required=True)
    quantity = ma.fields.Integer(required=True)
    refundAmount = Money(
        attribute="refund_amount", required=True, metadata={"description": "At the price paid"}
    )


class ReturnSchema(ma.Schema):
    returnId = ma.fields.UUID(attribute="id", required=True)
    orderId = ma.fields.UUID(attribute="order_id", required=True)
    items = ma.fields.List(ma.fields.Nested(ReturnItemSchema), required=True)
    reason = ma.fields.String(required=True, metadata={"enum_component": "ReturnReason"})
    note = ma.fields.String(allow_none=True, required=True)
    status = ma.fields.String(required=True, metadata={"enum_component": "ReturnStatus"})
    refundAmount = Money(attribute="refund_amount", required=True)
    restocked = ma.fields.Boolean(
        allow_none=True, required=True, metadata={"description": "null until RECEIVED"}
    )
    createdAt = ma.fields.DateTime(attribute="created_at", required=True)
    receivedAt = ma.fields.DateTime(attribute="received_at", allow_none=True, required=True)


class ReturnListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(ReturnSchema), required=True)


class ReturnDecisionSchema(StrictSchema):
    status = ma.fields.String(
        required=True,
        validate=ma.validate.OneOf(RETURN_DECISIONS),
        metadata={"enum_component": "ReturnDecisionStatus"},
    )
    restock = ma.fields.Boolean(
        load_default=True,
        metadata={"description": "RECEIVED: put the units back into stock (default true)"},
    )


def _ttl() -> float:
    return float(current_app.config["FEATURE_CACHE_SECONDS"])


@blp.route("/orders/<uuid:order_id>/returns")
class OrderReturns(MethodView):
    @authenticated
    @blp.arguments(ReturnCreateSchema)
    @blp.doc(parameters=[IDEMPOTENCY_DOC])
    @blp.response(
        201,
        ReturnSchema,
        headers={
            "Location": {"schema": {"type": "string"}},
            "Idempotent-Replayed": {"schema": {"type": "string"}, "description": "`true` on a replay"},
        },
    )
    @blp.alt_response(404, response="NOT_FOUND", description="No such order, another user's, or deleted")
    @blp.alt_response(
        409,
        response="CONFLICT",
        description="More than may be returned: units not delivered, delivered longer ago than "
        "RETURN_WINDOW_DAYS, or held by returns that are not REJECTED (errors: [{productId, requested, "
        "returnable}], nothing changed); or the same Idempotency-Key is still in progress",
    )
    @blp.alt_response(
        422,
        response="UNPROCESSABLE_ENTITY",
        description="Invalid body, a product that is not in the order, an invalid Idempotency-Key or the "
        "key reused with a different body",
    )
    @blp.alt_response(
        503, response="SERVICE_UNAVAILABLE", description="The returns feature is off for the caller"
    )
    def post(self, data: dict[str, Any], order_id: uuid.UUID) -> tuple[Return, dict[str, str]] | Response:
        """Ask to return delivered units of an order (its owner or an admin)."""
        actor = current_actor()
        idempotency: Idempotent[Return] | None = idempotent(
            actor, ReturnSchema(), 201, resource_id=lambda r: r.id
        )
        result = service.create_return(
            actor,
            order_id,
            service.ReturnRequest(
                lines={line["productId"]: line["quantity"] for line in data["items"]},
                reason=data["reason"],
                note=data.get("note"),
            ),
            window_days=int(current_app.config["RETURN_WINDOW_DAYS"]),
            feature_ttl=_ttl(),
            idempotency=idempotency,
        )
        if isinstance(result, Replay):
            return replayed(
                result.response,
                "returns.OrderReturnById",
                order_id=order_id,
                return_id=result.response.resource_id,
            )
        return result, {
            "Location": url_for("returns.OrderReturnById", order_id=order_id, return_id=result.id)
        }

    @authenticated
    @blp.response(200, ReturnListSchema)
    @blp.alt_response(404, response="NOT_FOUND", description="No such order, another user's, or deleted")
    @blp.alt_response(
        503, response="SERVICE_UNAVAILABLE", description="The returns feature is off for the caller"
    )
    def get(self, order_id: uuid.UUID) -> dict[str, list[Return]]:
        """The order's returns, oldest first (its owner or an admin)."""
        return {"items": service.list_returns(current_actor(), order_id, feature_ttl=_ttl())}


@blp.route("/orders/<uuid:order_id>/returns/<uuid:return_id>")
class OrderReturnById(MethodView):
    @authenticated
    @blp.response(200, ReturnSchema)
    @blp.alt_response(404, response="NOT_FOUND", description="No such order or return, or another user's")
    def get(self, order_id: uuid.UUID, return_id: uuid.UUID) -> Return:
        """One return of the order (its owner or an admin): the `Location` of a new return."""
        return service.get_return(current_actor(), order_id, return_id)

    @authenticated
    @blp.arguments(ReturnDecisionSchema)
    @blp.response(200, ReturnSchema)
    @blp.alt_response(403, response="FORBIDDEN", description="The caller is not an admin")
    @blp.alt_response(404, response="NOT_FOUND", description="No such order or return")
    @blp.alt_response(
        409,
        response="CONFLICT",
        description="A transition that is not allowed (RECEIVED or REJECTED from anything but REQUESTED; "
        "the current status again is 200 and changes nothing)",
    )
    @blp.alt_response(422, response="UNPROCESSABLE_ENTITY", description="Invalid body")
    def put(self, data: dict[str, Any], order_id: uuid.UUID, return_id: uuid.UUID) -> Return:
        """Receive (restock, start the refund) or reject a return (admin)."""
        return service.decide_return(
            current_actor(), order_id, return_id, data["status"], restock=data["restock"]
        )
