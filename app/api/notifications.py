"""Notifications: a user's e-mails and their delivery state; admins queue a failed one again."""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint

from app.api.schemas import PageArgsSchema, page_body, page_of
from app.api.security import admin_only, current_actor, self_or_admin
from app.domain.notifications import Notification
from app.services import notifications as service

blp = Blueprint(
    "notifications",
    __name__,
    description="E-mail notifications of order and payment events. A failed send is retried with "
    "backoff up to NOTIFY_MAX_ATTEMPTS, then the notification is FAILED; FAILED ones younger than "
    "24 h are queued again every NOTIFY_RETRY_INTERVAL_SECONDS with a new round of attempts.",
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


@blp.route("/users/<uuid:user_id>/notifications")
class UserNotifications(MethodView):
    @self_or_admin("user_id")
    @blp.arguments(PageArgsSchema, location="query", as_kwargs=True)
    @blp.response(200, page_of(NotificationSchema))
    def get(self, user_id: uuid.UUID, page: int, pageSize: int) -> dict[str, Any]:
        """List a user's notifications, newest first (the user or an admin)."""
        items, total = service.list_user_notifications(current_actor(), user_id, page, pageSize)
        return page_body(items, total, page, pageSize)


@blp.route("/admin/notifications/<uuid:notification_id>/retry")
class NotificationRetry(MethodView):
    @admin_only
    @blp.response(202, NotificationSchema)
    @blp.alt_response(409, response="CONFLICT", description="Already SENT, or it has no recipient")
    def post(self, notification_id: uuid.UUID) -> Notification:
        """Queue a notification's delivery again now (admin); a FAILED one gets a new round."""
        return service.retry_notification(current_actor(), notification_id)
