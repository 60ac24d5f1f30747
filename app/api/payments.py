"""Payments: read an order's payment; admins ask for refunds (done by the worker)."""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint

from app.api.idempotency import IDEMPOTENCY_DOC, idempotent, replayed
from app.api.schemas import MAX_MONEY, Money, StrictSchema
from app.api.security import admin_only, authenticated, current_actor
from app.domain.payments import Payment
from app.services import payments as service
from app.services.idempotency import Replay

blp = Blueprint(
    "payments",
    __name__,
    description=(
        "Each order has one payment, charged by the worker through the gateway (Stripe's "
        "PaymentIntents, idempotency key = paymentId, so it is charged at most once). `status`: "
        "PENDING → COMPLETED, or FAILED (declined: `failureReason` is the decline code, e.g. "
        "INSUFFICIENT_FUNDS, and the order is CANCELLED with `cancelReason` PAYMENT_FAILED; or voided "
        "by a cancellation: ORDER_CANCELLED / PAYMENT_TIMEOUT); COMPLETED → PARTIALLY_REFUNDED → "
        "REFUNDED as refunds succeed at the gateway (`refunds[]`, each PENDING → SUCCEEDED | FAILED; "
        "`refundedAmount` sums the SUCCEEDED ones; a FAILED refund e-mails the admins and is never "
        "retried). Transient gateway "
        "errors are retried with backoff (`attempts` counts the charge attempts); a payment whose "
        "attempts ran out stays PENDING until the order expires. `gatewayReference` is the "
        "PaymentIntent id, `refundReference` the refund id."
    ),
)


class RefundSchema(ma.Schema):
    refundId = ma.fields.UUID(attribute="id", required=True)
    amount = Money(required=True)
    status = ma.fields.String(required=True, metadata={"enum_component": "RefundStatus"})
    reason = ma.fields.String(allow_none=True, required=True)
    failureReason = ma.fields.String(attribute="failure_reason", allow_none=True, required=True)
    gatewayReference = ma.fields.String(
        attribute="gateway_reference", allow_none=True, required=True, metadata={"example": "re_3Pq..."}
    )
    createdAt = ma.fields.DateTime(attribute="created_at", required=True)


class RefundRequestSchema(StrictSchema):
    amount = Money(
        validate=ma.validate.Range(max=MAX_MONEY),
        metadata={"description": "Defaults to all that is still refundable; ≤ 0 → 422; more → 409"},
    )
    reason = ma.fields.String(validate=ma.validate.Length(max=500), allow_none=True)


class PaymentSchema(ma.Schema):
    paymentId = ma.fields.UUID(attribute="id", required=True)
    orderId = ma.fields.UUID(attribute="order_id", required=True)
    amount = Money(required=True)
    currency = ma.fields.String(required=True, metadata={"example": "USD"})
    status = ma.fields.String(required=True, metadata={"enum_component": "PaymentStatus"})
    method = ma.fields.String(required=True, metadata={"enum_component": "PaymentMethod"})
    gatewayReference = ma.fields.String(
        attribute="gateway_reference", allow_none=True, required=True, metadata={"example": "pi_3Pq..."}
    )
    refundReference = ma.fields.String(attribute="refund_reference", allow_none=True, required=True)
    failureReason = ma.fields.String(
        attribute="failure_reason", allow_none=True, required=True, metadata={"example": "INSUFFICIENT_FUNDS"}
    )
    attempts = ma.fields.Integer(required=True)
    refundedAmount = Money(attribute="refunded_amount", required=True)
    refunds = ma.fields.List(ma.fields.Nested(RefundSchema), required=True)


@blp.route("/orders/<uuid:order_id>/payment")
class OrderPayment(MethodView):
    @authenticated
    @blp.response(200, PaymentSchema)
    @blp.alt_response(404, response="NOT_FOUND", description="No such order, another user's, or deleted")
    def get(self, order_id: uuid.UUID) -> Payment:
        """View an order's payment (its owner or an admin)."""
        return service.get_payment(current_actor(), order_id)


@blp.route("/orders/<uuid:order_id>/refund")
class OrderRefund(MethodView):
    @admin_only
    @blp.arguments(RefundRequestSchema, required=False)
    @blp.doc(parameters=[IDEMPOTENCY_DOC])
    @blp.response(
        202,
        PaymentSchema,
        description="The refund is queued (a PENDING entry of `refunds`); the worker sends it",
    )
    @blp.alt_response(404, response="NOT_FOUND", description="No such order")
    @blp.alt_response(
        409, response="CONFLICT", description="Nothing was charged, or less is left to refund than asked"
    )
    @blp.alt_response(
        422, response="UNPROCESSABLE_ENTITY", description="amount ≤ 0, or an invalid Idempotency-Key"
    )
    def post(self, data: dict[str, Any] | None, order_id: uuid.UUID) -> Payment | Response:
        """Refund (part of) an order's payment (admin); a full refund cancels an order not shipped."""
        actor = current_actor()
        data = data or {}
        result = service.request_refund(
            actor,
            order_id,
            data.get("amount"),
            data.get("reason"),
            idempotency=idempotent(actor, PaymentSchema(), 202, resource_id=lambda p: p.order_id),
        )
        if isinstance(result, Replay):
            return replayed(result.response, "payments.OrderPayment", order_id=result.response.resource_id)
        return result
