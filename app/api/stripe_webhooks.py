"""Webhooks in: the gateway (Stripe, or the sandbox) tells us what happened to a payment."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint

from app.adapters.gateway import verify_webhook
from app.api.security import public
from app.services import payments as service

blp = Blueprint(
    "stripe_webhooks",
    __name__,
    description=(
        "Stripe's webhook endpoint. No token: the `Stripe-Signature` header is the credential, "
        "verified with STRIPE_WEBHOOK_SECRET by Stripe's own helper (a missing, wrong or stale — "
        "over 5 minutes — signature is a 400 problem and changes nothing). Each event id is "
        "processed once. `payment_intent.succeeded` completes a PENDING, REQUIRES_ACTION or "
        "PROCESSING payment (or has a voided one refunded); `payment_intent.payment_failed` and "
        "`payment_intent.canceled` decline it (the retry window); `payment_intent.requires_action` "
        "/ `processing` make it wait; `refund.updated` / `charge.refunded` settle refunds (a refund "
        "made in the dashboard is recorded); `charge.dispute.created` / `closed` record the dispute "
        "and e-mail the admins. Late or repeated events never move a payment backwards (a refund "
        "failing after success is the exception). Other event types are acknowledged and ignored."
    ),
)


class WebhookAckSchema(ma.Schema):
    received = ma.fields.Boolean(required=True)
    outcome = ma.fields.String(required=True, metadata={"example": "PaymentCompleted"})


@blp.route("/webhooks/stripe")
class StripeWebhook(MethodView):
    @public
    @blp.response(200, WebhookAckSchema)
    @blp.alt_response(400, response="BAD_REQUEST", description="Missing, wrong or stale signature")
    @blp.doc(
        parameters=[
            {
                "in": "header",
                "name": "Stripe-Signature",
                "required": True,
                "schema": {"type": "string"},
                "description": "t=<unix time>,v1=<HMAC-SHA256 of '<t>.<body>' under the endpoint secret>",
            }
        ],
        requestBody={
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
    )
    def post(self) -> dict[str, Any]:
        """Receive a gateway event (signed by the gateway)."""
        event = verify_webhook(
            request.get_data(cache=False),
            request.headers.get("Stripe-Signature"),
            str(current_app.config["STRIPE_WEBHOOK_SECRET"]),
        )
        config = current_app.config
        outcome = service.handle_gateway_event(
            event["id"],
            event["type"],
            event["data"]["object"],
            retry=service.RetryPolicy(
                int(config["PAYMENT_RETRY_WINDOW_SECONDS"]), float(config["FEATURE_CACHE_SECONDS"])
            ),
        )
        return {"received": True, "outcome": outcome}
