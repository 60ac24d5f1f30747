"""Payments: read an order's payment; admins ask for refunds (done by the worker)."""

from __future__ import annotations

import uuid

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint

from app.api.schemas import Money
from app.api.security import admin_only, authenticated, current_actor
from app.domain.payments import Payment
from app.services import payments as service

blp = Blueprint(
    "payments",
    __name__,
    description=(
        "Each order has one payment, charged by the worker through the gateway (Stripe's "
        "PaymentIntents, idempotency key = paymentId, so it is charged at most once). `status`: "
        "PENDING → COMPLETED, or FAILED (declined: `failureReason` is the decline code, e.g. "
        "INSUFFICIENT_FUNDS, and the order is CANCELLED with `cancelReason` PAYMENT_FAILED; or voided "
        "by a cancellation: ORDER_CANCELLED / PAYMENT_TIMEOUT); COMPLETED → REFUNDED. Transient gateway "
        "errors are retried with backoff (`attempts` counts the charge attempts); a payment whose "
        "attempts ran out stays PENDING until the order expires. `gatewayReference` is the "
        "PaymentIntent id, `refundReference` the refund id."
    ),
)


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
    @blp.response(202, PaymentSchema, description="The refund is queued; the payment becomes REFUNDED")
    @blp.alt_response(404, response="NOT_FOUND", description="No such order")
    @blp.alt_response(409, response="CONFLICT", description="The payment is not COMPLETED")
    def post(self, order_id: uuid.UUID) -> Payment:
        """Refund an order's COMPLETED payment (admin); a PLACED order is then cancelled."""
        return service.request_refund(current_actor(), order_id)
