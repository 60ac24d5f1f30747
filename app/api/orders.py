"""Orders: idempotent checkout, reads with ETags, status changes with optimistic locking, soft delete."""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from flask import Response, current_app, jsonify, request, url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from app.api.idempotency import IDEMPOTENCY_DOC, first_answer, idempotent, replayed
from app.api.rendering import compiled
from app.api.schemas import MAX_MONEY, Money, PageArgsSchema, StrictSchema, page_body, page_of
from app.api.security import authenticated, current_actor, subject_or_address
from app.api.users import AddressSchema
from app.domain.errors import ValidationFailed
from app.domain.orders import ORDER_STATUSES, Order, OrderStatusChange, OrderView
from app.domain.payments import CREDIT_CARD, PAYMENT_METHODS
from app.extensions import limiter
from app.observability import ORDERS_PLACED
from app.services import orders as service
from app.services.idempotency import Idempotent, Replay

blp = Blueprint(
    "orders",
    __name__,
    description=(
        "Checkout turns the caller's cart into an order in one transaction (stock locked in product-id "
        "order, checked for every line, reserved through the stock ledger; the cart emptied; the "
        "payment created PENDING and charged by the worker) and keeps a snapshot of the shipping "
        "address. Status transitions: PLACED → SHIPPED (admin; payment COMPLETED; follows the "
        "shipments: SHIPPED once every unit has shipped, and PUT SHIPPED ships what is left) → "
        "DELIVERED (admin; once every shipment is delivered); PLACED → CANCELLED (owner or admin, "
        "while nothing has shipped: stock "
        "returned, a PENDING payment voided, a COMPLETED one refunded). `cancelReason`: "
        "CANCELLED_BY_CUSTOMER, CANCELLED_BY_ADMIN, PAYMENT_FAILED, PAYMENT_TIMEOUT, PAYMENT_REFUNDED. "
        "A deleted order is hidden from its owner (404) and kept for the books: admins still read and "
        "list it."
    ),
)

IF_MATCH_DOC = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": 'The ETag of GET (`"3"`; `3` and `W/"3"` are accepted too). A mismatch → 412.',
}


# ---- schemas ------------------------------------------------------------------------------------


class OrderItemSchema(ma.Schema):
    productId = ma.fields.UUID(attribute="product_id", required=True)
    productName = ma.fields.String(attribute="product_name", required=True)
    quantity = ma.fields.Integer(required=True)
    price = Money(attribute="unit_price", required=True, metadata={"description": "Unit price when ordered"})
    subtotal = Money(attribute="line_total", required=True)
    quantityShipped = ma.fields.Integer(
        attribute="quantity_shipped", required=True, metadata={"description": "Units that left in shipments"}
    )
    quantityReturned = ma.fields.Integer(
        attribute="quantity_returned",
        required=True,
        metadata={"description": "Units of RECEIVED and REFUNDED returns"},
    )


class OrderPaymentSchema(ma.Schema):
    paymentId = ma.fields.UUID(attribute="id", required=True)
    status = ma.fields.String(required=True, metadata={"enum_component": "PaymentStatus"})
    method = ma.fields.String(required=True, metadata={"enum_component": "PaymentMethod"})
    amount = Money(required=True)


class OrderSchema(ma.Schema):
    orderId = ma.fields.UUID(attribute="id", required=True)
    userId = ma.fields.UUID(attribute="user_id", required=True)
    status = ma.fields.String(required=True, metadata={"enum_component": "OrderStatus"})
    orderDate = ma.fields.DateTime(attribute="order_date", required=True)
    orderItems = ma.fields.List(ma.fields.Nested(OrderItemSchema), attribute="items", required=True)
    totalAmount = Money(attribute="total_amount", required=True)
    currency = ma.fields.String(required=True, metadata={"example": "USD"})
    version = ma.fields.Integer(required=True)
    payment = ma.fields.Nested(OrderPaymentSchema, allow_none=True, required=True)
    cancelReason = ma.fields.String(
        attribute="cancel_reason", allow_none=True, required=True, metadata={"enum_component": "CancelReason"}
    )
    paymentDueBy = ma.fields.DateTime(
        attribute="payment_due_by",
        allow_none=True,
        required=True,
        metadata={"description": "A declined order waits until then for POST /orders/{orderId}/payment"},
    )
    shippingAddress = ma.fields.Nested(
        AddressSchema,
        attribute="shipping_address",
        allow_none=True,
        required=True,
        metadata={
            "description": "A snapshot taken at checkout (null only for orders placed before release 2)"
        },
    )
    fulfillmentStatus = ma.fields.String(
        attribute="fulfillment_status",
        required=True,
        metadata={
            "enum_component": "FulfillmentStatus",
            "description": "SHIPPED: every unit shipped; DELIVERED: every shipment delivered",
        },
    )
    allowedTransitions = ma.fields.List(
        ma.fields.String(metadata={"enum_component": "OrderStatus"}),
        attribute="allowed_transitions",
        required=True,
        metadata={"description": "The statuses other than the current one that the caller may PUT now"},
    )


class OrderCreateSchema(StrictSchema):
    userId = ma.fields.UUID(required=True)
    cartId = ma.fields.UUID(required=True)
    paymentMethod = ma.fields.String(
        load_default=CREDIT_CARD,
        validate=ma.validate.OneOf(PAYMENT_METHODS),
        metadata={"enum_component": "PaymentMethod"},
    )
    paymentToken = ma.fields.String(
        validate=ma.validate.Length(min=1, max=255),
        metadata={
            "description": "The gateway's payment method id (e.g. pm_card_visa); defaults to "
            "PAYMENT_DEFAULT_TOKEN, required where that is empty (production)",
            "example": "pm_card_visa",
        },
    )
    shippingAddress = ma.fields.Nested(
        AddressSchema,
        metadata={"description": "Where the order goes; default: the user's profile address (neither → 422)"},
    )
    expectedTotal = Money(
        validate=ma.validate.Range(min=0, max=MAX_MONEY),
        metadata={
            "description": "The total the customer was shown; if the order at current prices costs "
            "anything else → 409 `{expectedTotal, totalAmount}` and nothing changes",
            "example": 59.97,
        },
    )


class OrderListArgsSchema(PageArgsSchema):
    status = ma.fields.String(
        validate=ma.validate.OneOf(ORDER_STATUSES), metadata={"enum_component": "OrderStatus"}
    )
    userId = ma.fields.UUID(metadata={"description": "Admins: one user's orders. Customers: only their own."})


class OrderStatusUpdateSchema(StrictSchema):
    status = ma.fields.String(
        required=True, validate=ma.validate.OneOf(ORDER_STATUSES), metadata={"enum_component": "OrderStatus"}
    )
    version = ma.fields.Integer(
        strict=True,
        validate=ma.validate.Range(min=1),
        metadata={"description": "The version read; a mismatch → 409 with currentVersion"},
    )


class OrderStatusResultSchema(ma.Schema):
    orderId = ma.fields.UUID(attribute="id", required=True)
    status = ma.fields.String(required=True, metadata={"enum_component": "OrderStatus"})
    version = ma.fields.Integer(required=True)


class StatusChangeSchema(ma.Schema):
    fromStatus = ma.fields.String(
        attribute="from_status", allow_none=True, required=True, metadata={"enum_component": "OrderStatus"}
    )
    toStatus = ma.fields.String(
        attribute="to_status", required=True, metadata={"enum_component": "OrderStatus"}
    )
    actor = ma.fields.String(
        required=True, metadata={"example": "admin:0190c7e2-…", "description": "system, or role:userId"}
    )
    reason = ma.fields.String(allow_none=True, required=True)
    requestId = ma.fields.String(attribute="request_id", allow_none=True, required=True)
    at = ma.fields.DateTime(required=True)


class OrderHistorySchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(StatusChangeSchema), required=True)


# GET /orders/{id} renders with OrderSchema compiled once (app/api/rendering.py).
ORDER_BODY = compiled(OrderSchema())


# ---- helpers ------------------------------------------------------------------------------------


def _if_match_versions() -> list[int] | None:
    """The versions an If-Match header accepts (``"3"``, ``3`` or ``W/"3"``); None when absent or ``*``."""
    header = request.headers.get("If-Match")
    if header is None or header.strip() == "*":
        return None
    versions = []
    for tag in header.split(","):
        tag = tag.strip().removeprefix("W/").strip().strip('"')
        if tag.isdigit():
            versions.append(int(tag))
    return versions  # nothing parseable: nothing can match → 412


# One instance for every request: a schema's construction copies its fields (and its nested
# schemas' on first use), a visible share of a checkout's CPU when built per request (docs/bench).
ORDER_SCHEMA = OrderSchema()


def _etag(order: Order | OrderView) -> str:
    return f'"{order.version}"'


def checkout_rate_limit() -> str:
    """``CHECKOUT_RATE_LIMIT`` of the running app (per user), read per request."""
    return str(current_app.config["CHECKOUT_RATE_LIMIT"])


# ---- endpoints ----------------------------------------------------------------------------------


@blp.route("/orders")
class Orders(MethodView):
    @authenticated
    @limiter.limit(checkout_rate_limit, key_func=subject_or_address)
    @blp.arguments(OrderCreateSchema)
    @blp.doc(parameters=[IDEMPOTENCY_DOC])
    @blp.response(
        201,
        OrderSchema,
        headers={
            "Location": {"schema": {"type": "string"}},
            "Idempotent-Replayed": {"schema": {"type": "string"}, "description": "`true` on a replay"},
        },
    )
    @blp.alt_response(403, response="FORBIDDEN", description="An admin placing an order for another user")
    @blp.alt_response(404, response="NOT_FOUND", description="userId or cartId is not the caller's")
    @blp.alt_response(
        409,
        response="CONFLICT",
        description="Insufficient stock (errors: [{productId, requested, available}], nothing changed), "
        "expectedTotal differs from the total at current prices ({expectedTotal, totalAmount}, nothing "
        "changed), or the same Idempotency-Key is still in progress",
    )
    @blp.alt_response(
        422,
        response="UNPROCESSABLE_ENTITY",
        description="Invalid body, empty cart, no shippingAddress and no profile address, missing "
        "paymentToken (production), invalid Idempotency-Key or the key reused with a different body",
    )
    @blp.alt_response(
        503,
        response="SERVICE_UNAVAILABLE",
        description="Checkout is switched off (feature toggle), or the stock stayed locked after retries",
    )
    @blp.alt_response(
        429,
        response="TOO_MANY_REQUESTS",
        description="More checkouts by this user than CHECKOUT_RATE_LIMIT allows (default 30/minute)",
    )
    def post(self, data: dict[str, Any]) -> tuple[Order, dict[str, str]] | Response:
        """Place an order from the caller's cart (checkout)."""
        actor = current_actor()
        idempotency: Idempotent[Order] | None = idempotent(
            actor, ORDER_SCHEMA, 201, resource_id=lambda order: order.id
        )
        token = data.get("paymentToken") or current_app.config["PAYMENT_DEFAULT_TOKEN"]
        if not token:
            raise ValidationFailed(
                "paymentToken is required", {"paymentToken": ["Missing data for required field."]}
            )
        result = service.place_order(
            actor,
            service.CheckoutRequest(
                user_id=data["userId"],
                cart_id=data["cartId"],
                payment_method=data["paymentMethod"],
                payment_token=token,
                expected_total=data.get("expectedTotal"),
                shipping_address=data.get("shippingAddress"),
            ),
            currency=current_app.config["CURRENCY"],
            feature_ttl=float(current_app.config["FEATURE_CACHE_SECONDS"]),
            idempotency=idempotency,
        )
        if isinstance(result, Replay):
            return replayed(result.response, "orders.OrderById", order_id=result.response.resource_id)
        ORDERS_PLACED.inc()
        # With a key, the body stored under it is the response: rendered once, not twice.
        answer = first_answer("orders.OrderById", order_id=result.id)
        if answer is not None:
            return answer
        return result, {"Location": url_for("orders.OrderById", order_id=result.id)}

    @authenticated
    @blp.arguments(OrderListArgsSchema, location="query")
    @blp.response(200, page_of(OrderSchema))
    @blp.alt_response(404, response="NOT_FOUND", description="A customer filtering by another userId")
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List orders, newest first: a customer's own; an admin's all (optionally one user's)."""
        orders, total = service.list_orders(
            current_actor(),
            status=args.get("status"),
            user_id=args.get("userId"),
            page=args["page"],
            page_size=args["pageSize"],
        )
        return page_body(orders, total, args["page"], args["pageSize"])


@blp.route("/orders/<uuid:order_id>")
class OrderById(MethodView):
    @authenticated
    @blp.response(
        200, OrderSchema, headers={"ETag": {"schema": {"type": "string"}, "description": '"<version>"'}}
    )
    @blp.alt_response(404, response="NOT_FOUND", description="No such order, another user's, or deleted")
    def get(self, order_id: uuid.UUID) -> tuple[Response, dict[str, str]]:
        """View an order (its owner or an admin), with its ETag."""
        order = service.get_order(current_actor(), order_id)
        return jsonify(ORDER_BODY(order)), {"ETag": _etag(order)}

    @authenticated
    @blp.arguments(OrderStatusUpdateSchema)
    @blp.doc(parameters=[IF_MATCH_DOC])
    @blp.response(200, OrderStatusResultSchema)
    @blp.alt_response(403, response="FORBIDDEN", description="SHIPPED/DELIVERED asked by a non-admin")
    @blp.alt_response(404, response="NOT_FOUND", description="No such order, another user's, or deleted")
    @blp.alt_response(
        409,
        response="CONFLICT",
        description="A transition the table does not allow (SHIPPED before the payment is "
        "COMPLETED; CANCELLED once part of the order has shipped), or a body version that does not "
        "match (currentVersion)",
    )
    @blp.alt_response(412, response="PRECONDITION_FAILED", description="If-Match does not match the version")
    def put(self, data: dict[str, Any], order_id: uuid.UUID) -> Order:
        """Change the status (the current status again: 200, nothing changes). SHIPPED ships every
        remaining unit as one shipment without tracking; DELIVERED delivers every shipment."""
        return service.update_status(
            current_actor(),
            order_id,
            data["status"],
            body_version=data.get("version"),
            if_match=_if_match_versions(),
        )

    @authenticated
    @blp.response(204)
    @blp.alt_response(404, response="NOT_FOUND", description="No such order, another user's, or deleted")
    @blp.alt_response(409, response="CONFLICT", description="The order is SHIPPED or DELIVERED")
    def delete(self, order_id: uuid.UUID) -> None:
        """Delete (hide) an order: a PLACED one is cancelled first; SHIPPED/DELIVERED → 409."""
        service.delete_order(current_actor(), order_id)


@blp.route("/orders/<uuid:order_id>/history")
class OrderHistory(MethodView):
    @authenticated
    @blp.response(200, OrderHistorySchema)
    @blp.alt_response(404, response="NOT_FOUND", description="No such order, another user's, or deleted")
    def get(self, order_id: uuid.UUID) -> dict[str, list[OrderStatusChange]]:
        """The order's status changes, oldest first (the first is its creation as PLACED)."""
        return {"items": service.order_history(current_actor(), order_id)}
