"""Shipments: an order ships in parts with carrier and tracking; each is delivered on its own (SPEC §5.1)."""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from flask import Response, url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from app.api.idempotency import IDEMPOTENCY_DOC, idempotent, replayed
from app.api.schemas import StrictSchema
from app.api.security import authenticated, current_actor
from app.domain.fulfilment import SHIPMENT_STATUSES, Shipment
from app.services import shipments as service
from app.services.idempotency import Idempotent, Replay

blp = Blueprint(
    "shipments",
    __name__,
    description=(
        "An order ships in one or more shipments (admin), each with carrier, tracking number and URL, "
        "only once its payment is COMPLETED and never more units than were ordered. The order's "
        "status follows its units: SHIPPED when every unit has shipped, DELIVERED when every shipment "
        "is delivered; while only part has shipped it stays PLACED (fulfillmentStatus "
        "PARTIALLY_SHIPPED) and can no longer be cancelled. Each shipment e-mails the customer "
        "(OrderShipped, with carrier and tracking); the last delivery sends OrderDelivered."
    ),
)


def _unique_products(items: list[dict[str, Any]]) -> None:
    seen = set()
    for item in items:
        if item["productId"] in seen:
            raise ma.ValidationError({"items": ["Each productId at most once."]})
        seen.add(item["productId"])


class LineSchema(StrictSchema):
    productId = ma.fields.UUID(required=True)
    quantity = ma.fields.Integer(strict=True, required=True, validate=ma.validate.Range(min=1, max=1000))


class ShipmentCreateSchema(StrictSchema):
    items = ma.fields.List(
        ma.fields.Nested(LineSchema),
        validate=ma.validate.Length(min=1, max=1000),
        metadata={"description": "Left out: every unit not shipped yet"},
    )
    carrier = ma.fields.String(
        required=True, validate=ma.validate.Length(min=1, max=100), metadata={"example": "UPS"}
    )
    trackingNumber = ma.fields.String(
        required=True, validate=ma.validate.Length(min=1, max=100), metadata={"example": "1Z999AA10123456784"}
    )
    trackingUrl = ma.fields.Url(
        schemes={"http", "https"},
        validate=ma.validate.Length(max=2048),
        allow_none=True,
        metadata={"example": "https://www.ups.com/track?tracknum=1Z999AA10123456784"},
    )

    @ma.validates_schema
    def _lines_unique(self, data: dict[str, Any], **kwargs: Any) -> None:
        _unique_products(data.get("items") or [])


class ShipmentItemSchema(ma.Schema):
    productId = ma.fields.UUID(attribute="product_id", required=True)
    quantity = ma.fields.Integer(required=True)


class ShipmentSchema(ma.Schema):
    shipmentId = ma.fields.UUID(attribute="id", required=True)
    orderId = ma.fields.UUID(attribute="order_id", required=True)
    items = ma.fields.List(ma.fields.Nested(ShipmentItemSchema), required=True)
    carrier = ma.fields.String(allow_none=True, required=True)
    trackingNumber = ma.fields.String(attribute="tracking_number", allow_none=True, required=True)
    trackingUrl = ma.fields.String(attribute="tracking_url", allow_none=True, required=True)
    status = ma.fields.String(required=True, metadata={"enum_component": "ShipmentStatus"})
    shippedAt = ma.fields.DateTime(attribute="shipped_at", required=True)
    deliveredAt = ma.fields.DateTime(attribute="delivered_at", allow_none=True, required=True)


# One instance for every request (the answer stored under an Idempotency-Key): building a schema
# copies its fields, per process work.
SHIPMENT_SCHEMA = ShipmentSchema()


class ShipmentListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(ShipmentSchema), required=True)


class ShipmentUpdateSchema(StrictSchema):
    status = ma.fields.String(
        required=True,
        validate=ma.validate.OneOf(SHIPMENT_STATUSES),
        metadata={
            "enum_component": "ShipmentStatus",
            "description": "DELIVERED (SHIPPED again: nothing changes)",
        },
    )


@blp.route("/orders/<uuid:order_id>/shipments")
class OrderShipments(MethodView):
    @authenticated
    @blp.arguments(ShipmentCreateSchema)
    @blp.doc(parameters=[IDEMPOTENCY_DOC])
    @blp.response(
        201,
        ShipmentSchema,
        headers={
            "Location": {"schema": {"type": "string"}},
            "Idempotent-Replayed": {"schema": {"type": "string"}, "description": "`true` on a replay"},
        },
    )
    @blp.alt_response(403, response="FORBIDDEN", description="The caller is not an admin")
    @blp.alt_response(404, response="NOT_FOUND", description="No such order")
    @blp.alt_response(
        409,
        response="CONFLICT",
        description="The payment is not COMPLETED; nothing is left to ship (or the order is cancelled); a "
        "quantity above what is left to ship (errors: [{productId, requested, remaining}], nothing "
        "changed); or the same Idempotency-Key is still in progress",
    )
    @blp.alt_response(
        422,
        response="UNPROCESSABLE_ENTITY",
        description="Invalid body, a product that is not in the order, an invalid Idempotency-Key or the "
        "key reused with a different body",
    )
    def post(self, data: dict[str, Any], order_id: uuid.UUID) -> tuple[Shipment, dict[str, str]] | Response:
        """Ship units of a paid order (admin; without items, every unit not shipped yet)."""
        actor = current_actor()
        idempotency: Idempotent[Shipment] | None = idempotent(
            actor, SHIPMENT_SCHEMA, 201, resource_id=lambda shipment: shipment.id
        )
        items = data.get("items")
        result = service.create_shipment(
            actor,
            order_id,
            service.ShipmentRequest(
                lines=None if items is None else {line["productId"]: line["quantity"] for line in items},
                carrier=data["carrier"],
                tracking_number=data["trackingNumber"],
                tracking_url=data.get("trackingUrl"),
            ),
            idempotency=idempotency,
        )
        if isinstance(result, Replay):
            return replayed(
                result.response,
                "shipments.OrderShipmentById",
                order_id=order_id,
                shipment_id=result.response.resource_id,
            )
        location = url_for("shipments.OrderShipmentById", order_id=order_id, shipment_id=result.id)
        return result, {"Location": location}

    @authenticated
    @blp.response(200, ShipmentListSchema)
    @blp.alt_response(404, response="NOT_FOUND", description="No such order, another user's, or deleted")
    def get(self, order_id: uuid.UUID) -> dict[str, list[Shipment]]:
        """The order's shipments, oldest first (its owner or an admin)."""
        return {"items": service.list_shipments(current_actor(), order_id)}


@blp.route("/orders/<uuid:order_id>/shipments/<uuid:shipment_id>")
class OrderShipmentById(MethodView):
    @authenticated
    @blp.response(200, ShipmentSchema)
    @blp.alt_response(404, response="NOT_FOUND", description="No such order or shipment, or another user's")
    def get(self, order_id: uuid.UUID, shipment_id: uuid.UUID) -> Shipment:
        """One shipment of the order (its owner or an admin)."""
        return service.get_shipment(current_actor(), order_id, shipment_id)

    @authenticated
    @blp.arguments(ShipmentUpdateSchema)
    @blp.response(200, ShipmentSchema)
    @blp.alt_response(403, response="FORBIDDEN", description="The caller is not an admin")
    @blp.alt_response(404, response="NOT_FOUND", description="No such order or shipment")
    @blp.alt_response(409, response="CONFLICT", description="SHIPPED asked of a delivered shipment")
    @blp.alt_response(422, response="UNPROCESSABLE_ENTITY", description="Invalid body")
    def put(self, data: dict[str, Any], order_id: uuid.UUID, shipment_id: uuid.UUID) -> Shipment:
        """Mark a shipment DELIVERED (admin); the last delivery makes the order DELIVERED."""
        return service.update_shipment(current_actor(), order_id, shipment_id, data["status"])
