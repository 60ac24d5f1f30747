"""Outbound webhooks (admin): endpoints, secrets, a test event, the delivery log, manual retry."""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint

from app.api.features import JsonBoolean
from app.api.orders import OrderSchema
from app.api.payments import PaymentSchema
from app.api.returns import ReturnSchema
from app.api.schemas import PageArgsSchema, StrictSchema, page_body, page_of
from app.api.security import admin_only, current_actor
from app.domain.webhooks import (
    ALL_EVENTS,
    DELIVERY_STATUSES,
    EVENT_TYPES,
    ORDER,
    PAYMENT,
    RETURN,
    TEST_EVENT,
    WEBHOOK_EVENTS,
    WebhookEndpoint,
)
from app.services import webhooks as service

blp = Blueprint(
    "webhooks",
    __name__,
    description="Outbound webhooks in the Standard Webhooks format (https://www.standardwebhooks.com): "
    "each delivery is `POST url` with body `{type, timestamp, data}` and the headers `webhook-id` "
    "(the same on every retry), `webhook-timestamp` and `webhook-signature` (`v1,<base64 "
    "HMAC-SHA256>`, two space-separated signatures during the 24 h after a secret rotation). Any 2xx "
    "within WEBHOOK_TIMEOUT_SECONDS is a success; redirects are not followed; a failed first attempt "
    "is retried after each delay of WEBHOOK_RETRY_SCHEDULE, then the delivery is FAILED. 410 "
    "disables the endpoint at once, WEBHOOK_DISABLE_AFTER_FAILURES failed deliveries in a row "
    "too; the admins are e-mailed. Delivery is at least once: de-duplicate on `webhook-id`. The "
    "payload of each event type is the component `Webhook<Type>Payload` (see `x-webhooks` in this "
    "document).",
)


def _policy() -> service.UrlPolicy:
    config = current_app.config
    return service.UrlPolicy(
        allow_private=bool(config["WEBHOOK_ALLOW_PRIVATE_URLS"]),
        require_https=config["APP_ENV"] == "production",
    )


def _event_type(value: str) -> None:
    if value != ALL_EVENTS and value not in EVENT_TYPES:
        raise ma.ValidationError(f"Unknown event type: {value}.")


def _events(**kwargs: Any) -> ma.fields.List:
    return ma.fields.List(
        ma.fields.String(validate=[ma.validate.Length(max=64), _event_type]),
        validate=ma.validate.Length(min=1, max=len(EVENT_TYPES) + 1),
        metadata={
            "description": f'Event types, or `["*"]` for all: {", ".join(EVENT_TYPES)}',
            "example": ["order.placed", "order.paid"],
        },
        **kwargs,
    )


def _url(**kwargs: Any) -> ma.fields.String:
    return ma.fields.String(
        validate=ma.validate.Length(min=1, max=2048),
        metadata={
            "description": "http(s) URL of a public host (https only in production); a host that resolves "
            "to a loopback, private, link-local or multicast address is refused unless "
            "WEBHOOK_ALLOW_PRIVATE_URLS",
            "example": "https://erp.example.com/hooks/oms",
        },
        **kwargs,
    )


class WebhookCreateSchema(StrictSchema):
    url = _url(required=True)
    events = _events(required=True)
    description = ma.fields.String(validate=ma.validate.Length(max=500), load_default="")


class WebhookUpdateSchema(StrictSchema):
    url = _url()
    events = _events()
    description = ma.fields.String(validate=ma.validate.Length(max=500))
    enabled = JsonBoolean()


class WebhookSchema(ma.Schema):
    webhookId = ma.fields.UUID(attribute="id", required=True)
    url = ma.fields.String(required=True)
    events = ma.fields.List(ma.fields.String(), attribute="event_types", required=True)
    description = ma.fields.String(required=True)
    enabled = ma.fields.Boolean(required=True)
    disabledReason = ma.fields.String(attribute="disabled_reason", allow_none=True, required=True)
    createdAt = ma.fields.DateTime(attribute="created_at", required=True)


class WebhookWithSecretSchema(WebhookSchema):
    secret = ma.fields.String(
        required=True,
        metadata={
            "description": "`whsec_` + base64 of 32 random bytes; shown only here",
            "example": "whsec_…",
        },
    )

    @ma.pre_dump
    def _flatten(self, created: service.CreatedEndpoint, **kwargs: Any) -> dict[str, Any]:
        endpoint = created.endpoint
        return {
            "id": endpoint.id,
            "url": endpoint.url,
            "event_types": endpoint.event_types,
            "description": endpoint.description,
            "enabled": endpoint.enabled,
            "disabled_reason": endpoint.disabled_reason,
            "created_at": endpoint.created_at,
            "secret": created.secret,
        }


class DeliveryArgsSchema(PageArgsSchema):
    status = ma.fields.String(
        validate=ma.validate.OneOf(DELIVERY_STATUSES), metadata={"enum_component": "WebhookDeliveryStatus"}
    )


class WebhookDeliverySchema(ma.Schema):
    deliveryId = ma.fields.UUID(attribute="delivery.id", required=True)
    eventId = ma.fields.String(
        attribute="event_id", required=True, metadata={"description": "The `webhook-id`"}
    )
    eventType = ma.fields.String(attribute="event_type", required=True, metadata={"example": "order.paid"})
    status = ma.fields.String(
        attribute="delivery.status", required=True, metadata={"enum_component": "WebhookDeliveryStatus"}
    )
    attempts = ma.fields.Integer(attribute="delivery.attempts", required=True)
    lastStatusCode = ma.fields.Integer(attribute="delivery.last_status_code", allow_none=True, required=True)
    lastError = ma.fields.String(attribute="delivery.last_error", allow_none=True, required=True)
    nextAttemptAt = ma.fields.DateTime(attribute="delivery.next_attempt_at", allow_none=True, required=True)
    createdAt = ma.fields.DateTime(attribute="delivery.created_at", required=True)
    deliveredAt = ma.fields.DateTime(attribute="delivery.delivered_at", allow_none=True, required=True)


@blp.route("/admin/webhooks")
class Webhooks(MethodView):
    @admin_only
    @blp.arguments(WebhookCreateSchema)
    @blp.response(201, WebhookWithSecretSchema)
    def post(self, data: dict[str, Any]) -> service.CreatedEndpoint:
        """Create a webhook endpoint; its secret is shown in this answer only (admin)."""
        return service.create_endpoint(
            current_actor(), data["url"], data["events"], data["description"], _policy()
        )

    @admin_only
    @blp.arguments(PageArgsSchema, location="query", as_kwargs=True)
    @blp.response(200, page_of(WebhookSchema))
    def get(self, page: int, pageSize: int) -> dict[str, Any]:
        """List the webhook endpoints, newest first (admin)."""
        items, total = service.list_endpoints(current_actor(), page, pageSize)
        return page_body(items, total, page, pageSize)


@blp.route("/admin/webhooks/<uuid:webhook_id>")
class WebhookById(MethodView):
    @admin_only
    @blp.response(200, WebhookSchema)
    @blp.alt_response(404, response="NOT_FOUND", description="No such endpoint")
    def get(self, webhook_id: uuid.UUID) -> WebhookEndpoint:
        """View a webhook endpoint (without its secret) (admin)."""
        return service.get_endpoint(current_actor(), webhook_id)

    @admin_only
    @blp.arguments(WebhookUpdateSchema)
    @blp.response(200, WebhookSchema)
    @blp.alt_response(404, response="NOT_FOUND", description="No such endpoint")
    def patch(self, data: dict[str, Any], webhook_id: uuid.UUID) -> WebhookEndpoint:
        """Change an endpoint's url, events, description or enabled (admin)."""
        return service.update_endpoint(current_actor(), webhook_id, data, _policy())

    @admin_only
    @blp.response(204)
    @blp.alt_response(404, response="NOT_FOUND", description="No such endpoint")
    def delete(self, webhook_id: uuid.UUID) -> None:
        """Delete an endpoint and its delivery log (admin)."""
        service.delete_endpoint(current_actor(), webhook_id)


@blp.route("/admin/webhooks/<uuid:webhook_id>/rotate-secret")
class WebhookSecretRotation(MethodView):
    @admin_only
    @blp.response(200, WebhookWithSecretSchema)
    @blp.alt_response(404, response="NOT_FOUND", description="No such endpoint")
    def post(self, webhook_id: uuid.UUID) -> service.CreatedEndpoint:
        """Replace the secret; the previous one keeps signing beside it for 24 h (admin)."""
        return service.rotate_secret(current_actor(), webhook_id)


@blp.route("/admin/webhooks/<uuid:webhook_id>/test")
class WebhookTest(MethodView):
    @admin_only
    @blp.response(202, WebhookDeliverySchema)
    @blp.alt_response(404, response="NOT_FOUND", description="No such endpoint")
    def post(self, webhook_id: uuid.UUID) -> service.DeliveryView:
        """Send a `webhook.test` event to this endpoint, whatever it subscribes to (admin)."""
        return service.send_test_event(current_actor(), webhook_id)


@blp.route("/admin/webhooks/<uuid:webhook_id>/deliveries")
class WebhookDeliveries(MethodView):
    @admin_only
    @blp.arguments(DeliveryArgsSchema, location="query")
    @blp.response(200, page_of(WebhookDeliverySchema))
    @blp.alt_response(404, response="NOT_FOUND", description="No such endpoint")
    def get(self, args: dict[str, Any], webhook_id: uuid.UUID) -> dict[str, Any]:
        """List an endpoint's deliveries, newest first, optionally by status (admin)."""
        page, page_size = args["page"], args["pageSize"]
        items, total = service.list_deliveries(
            current_actor(), webhook_id, args.get("status"), page, page_size
        )
        return page_body(items, total, page, page_size)


@blp.route("/admin/webhooks/<uuid:webhook_id>/deliveries/<uuid:delivery_id>/retry")
class WebhookDeliveryRetry(MethodView):
    @admin_only
    @blp.response(202, WebhookDeliverySchema)
    @blp.alt_response(404, response="NOT_FOUND", description="No such endpoint or delivery")
    def post(self, webhook_id: uuid.UUID, delivery_id: uuid.UUID) -> service.DeliveryView:
        """Make one more attempt of a delivery now, whatever its status (admin)."""
        schedule = tuple(current_app.config["WEBHOOK_RETRY_SCHEDULE"])
        return service.retry_delivery(current_actor(), webhook_id, delivery_id, schedule)


# ---- the payloads, in the OpenAPI document ------------------------------------------------------
# OpenAPI 3.0 has no ``webhooks`` section (3.1 has): each type's body is a component, and the
# top-level ``x-webhooks`` extension maps every event type to it, in 3.1's shape.


class _WebhookEnvelope(ma.Schema):
    timestamp = ma.fields.DateTime(
        required=True, metadata={"description": "When the event happened (RFC 3339)"}
    )


def _types_of(kind: str) -> str:
    return ", ".join(sorted({t.name for t in WEBHOOK_EVENTS.values() if t.data == kind}))


class WebhookOrderEventSchema(_WebhookEnvelope):
    type = ma.fields.String(
        required=True, metadata={"enum_component": "WebhookEventType", "description": _types_of(ORDER)}
    )
    data = ma.fields.Nested(
        OrderSchema, required=True, metadata={"description": "As GET /orders/{id} shows it to an admin"}
    )


class WebhookPaymentEventSchema(_WebhookEnvelope):
    type = ma.fields.String(
        required=True, metadata={"enum_component": "WebhookEventType", "description": _types_of(PAYMENT)}
    )
    data = ma.fields.Nested(
        PaymentSchema, required=True, metadata={"description": "As GET /orders/{id}/payment shows it"}
    )


class WebhookReturnEventSchema(_WebhookEnvelope):
    type = ma.fields.String(
        required=True, metadata={"enum_component": "WebhookEventType", "description": _types_of(RETURN)}
    )
    data = ma.fields.Nested(
        ReturnSchema,
        required=True,
        metadata={"description": "As GET /orders/{id}/returns/{returnId} shows it"},
    )


class WebhookTestEventSchema(_WebhookEnvelope):
    type = ma.fields.String(
        required=True, metadata={"enum_component": "WebhookEventType", "description": TEST_EVENT}
    )
    data = ma.fields.Dict(required=True, metadata={"example": {"webhookId": "…", "message": "A test event"}})


class WebhookEventDataSchema(_WebhookEnvelope):
    type = ma.fields.String(required=True, metadata={"enum_component": "WebhookEventType"})
    data = ma.fields.Dict(
        required=True,
        metadata={
            "description": "The event's own fields (product.low_stock: {productId, productName, stock, "
            "lowStockThreshold})"
        },
    )


PAYLOADS: dict[str, type[ma.Schema]] = {
    "WebhookOrderEvent": WebhookOrderEventSchema,
    "WebhookPaymentEvent": WebhookPaymentEventSchema,
    "WebhookReturnEvent": WebhookReturnEventSchema,
    "WebhookTestEvent": WebhookTestEventSchema,
    "WebhookResourceEvent": WebhookEventDataSchema,
}
# Each event type's payload follows from what its ``data`` holds (the one table, WEBHOOK_EVENTS).
_PAYLOAD_OF_KIND = {ORDER: "WebhookOrderEvent", PAYMENT: "WebhookPaymentEvent", RETURN: "WebhookReturnEvent"}


def _payload_of(event_type: str) -> str:
    if event_type == TEST_EVENT:
        return "WebhookTestEvent"
    kinds = {t.data for t in WEBHOOK_EVENTS.values() if t.name == event_type}
    kind = kinds.pop() if len(kinds) == 1 else None
    return _PAYLOAD_OF_KIND.get(kind or "", "WebhookResourceEvent")


def document_payloads(spec: Any) -> None:
    """Register the payload components and the ``x-webhooks`` map on the API's spec."""
    for name, schema in PAYLOADS.items():
        spec.components.schema(name, schema=schema)
    headers = {
        name: {"required": True, "schema": {"type": "string"}, "description": text}
        for name, text in (
            ("webhook-id", "The event's id, the same on every attempt: de-duplicate on it"),
            ("webhook-timestamp", "Unix seconds of this attempt"),
            (
                "webhook-signature",
                '`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` (space-separated: two secrets)',
            ),
        )
    }
    spec.options["x-webhooks"] = {
        event_type: {
            "post": {
                "summary": f"The {event_type} event",
                "parameters": [{"name": n, "in": "header", **h} for n, h in headers.items()],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": f"#/components/schemas/{_payload_of(event_type)}"}
                        }
                    },
                },
                "responses": {"2XX": {"description": "Received (any other answer is retried)"}},
            }
        }
        for event_type in (*EVENT_TYPES, TEST_EVENT)
    }
