"""Notifications: a user's e-mails and their delivery state; admins queue a failed one again."""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint

from app.api.schemas import PageArgsSchema, page_body, page_of
from app.api.security import admin_only, current_actor, self_or_admin
from app.domain.notifications import N_FAILED, N_PENDING, N_SENT, Notification
from app.services import notifications as service

blp = Blueprint(
    "notifications",
    __name__,
    description="E-mail notifications of order and payment events. A failed send is retried with "
    "backoff up to NOTIFY_MAX_ATTEMPTS, then the notification is FAILED; FAILED ones younger than "
    "24 h are queued again every NOTIFY_RETRY_INTERVAL_SECONDS with a new round of attempts.",
)


class NotificationDeliverySchema(ma.Schema):
    at = ma.fields.String(
        required=True, metadata={"format": "date-time", "description": "When the attempt was made"}
    )
    error = ma.fields.String(
        allow_none=True,
        required=True,
        metadata={"description": "Why it failed; null for the attempt that sent it"},
    )


class NotificationSchema(ma.Schema):
    notificationId = ma.fields.UUID(attribute="id", required=True)
    event = ma.fields.String(required=True, metadata={"example": "OrderPlaced"})
    message = ma.fields.String(required=True, metadata={"description": "The plain-text body"})
    status = ma.fields.String(required=True, metadata={"enum_component": "NotificationStatus"})
    attempts = ma.fields.Integer(required=True, metadata={"description": "Send attempts in this round"})
    lastError = ma.fields.String(attribute="last_error", allow_none=True, required=True)
    createdAt = ma.fields.DateTime(attribute="created_at", required=True)
    sentAt = ma.fields.DateTime(attribute="sent_at", allow_none=True, required=True)
    deliveries = ma.fields.List(
        ma.fields.Nested(NotificationDeliverySchema),
        required=True,
        metadata={"description": "Every delivery attempt, oldest first, across all rounds"},
    )
    permanentFailure = ma.fields.Boolean(
        attribute="permanent_failure",
        required=True,
        metadata={"description": "The SMTP server refused it for good (5xx): the retry job never queues it"},
    )


@blp.route("/users/<uuid:user_id>/notifications")
class UserNotifications(MethodView):
    @self_or_admin("user_id")
    @blp.arguments(PageArgsSchema, location="query", as_kwargs=True)
    @blp.response(200, page_of(NotificationSchema))
    def get(self, user_id: uuid.UUID, page: int, pageSize: int) -> dict[str, Any]:
        """List a user's notifications, newest first (the user or an admin)."""
        items, total = service.list_user_notifications(current_actor(), user_id, page, pageSize)
        return page_body(items, total, page, pageSize)


class NotificationFilterSchema(PageArgsSchema):
    status = ma.fields.String(
        validate=ma.validate.OneOf([N_PENDING, N_SENT, N_FAILED]),
        metadata={"enum_component": "NotificationStatus"},
    )
    event = ma.fields.String(validate=ma.validate.Length(min=1, max=64), metadata={"example": "OrderPlaced"})
    userId = ma.fields.UUID()


@blp.route("/admin/notifications")
class AdminNotifications(MethodView):
    @admin_only
    @blp.arguments(NotificationFilterSchema, location="query")
    @blp.response(200, page_of(NotificationSchema))
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List notifications (admin), newest first, filtered by status, event and user."""
        page, page_size = args["page"], args["pageSize"]
        items, total = service.list_notifications(
            current_actor(),
            status=args.get("status"),
            event=args.get("event"),
            user_id=args.get("userId"),
            page=page,
            page_size=page_size,
        )
        return page_body(items, total, page, page_size)


@blp.route("/admin/notifications/<uuid:notification_id>/retry")
class NotificationRetry(MethodView):
    @admin_only
    @blp.response(202, NotificationSchema)
    @blp.alt_response(409, response="CONFLICT", description="Already SENT, or it has no recipient")
    def post(self, notification_id: uuid.UUID) -> Notification:
        """Queue a notification's delivery again now (admin); a FAILED one gets a new round."""
        return service.retry_notification(current_actor(), notification_id)
