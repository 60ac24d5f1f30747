"""The audit log (admin): who changed what, when, under which request."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint

from app.api.schemas import PageArgsSchema, page_body, page_of
from app.api.security import admin_only, current_actor
from app.domain.audit import AuditAction, AuditFilter, AuditResource
from app.services import audit as service

blp = Blueprint(
    "audit",
    __name__,
    description="Every admin action (product create and update, stock movements, feature toggles, "
    "refunds, order status changes and deletions by an admin, erasures, webhook changes and secret "
    "rotations) is recorded in the transaction of the change, with the request id and the fields "
    "that changed as `{field: {old, new}}` (API field names). Append-only: the database refuses "
    "UPDATE and DELETE of entries.",
)


class AuditEntrySchema(ma.Schema):
    auditId = ma.fields.UUID(attribute="id", required=True)
    actorId = ma.fields.UUID(attribute="actor_id", allow_none=True, required=True)
    actorRole = ma.fields.String(attribute="actor_role", required=True, metadata={"example": "admin"})
    action = ma.fields.String(required=True, metadata={"enum_component": "AuditAction"})
    resourceType = ma.fields.String(
        attribute="resource_type", required=True, metadata={"enum_component": "AuditResourceType"}
    )
    resourceId = ma.fields.String(attribute="resource_id", required=True)
    requestId = ma.fields.String(attribute="request_id", allow_none=True, required=True)
    changes = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.Dict(),
        required=True,
        metadata={
            "description": "The fields that changed: `{field: {old, new}}`",
            "example": {"price": {"old": 12.5, "new": 9.99}},
        },
    )
    at = ma.fields.DateTime(required=True)


class AuditLogArgsSchema(PageArgsSchema):
    actorId = ma.fields.UUID()
    action = ma.fields.String(
        validate=ma.validate.OneOf(list(AuditAction)), metadata={"enum_component": "AuditAction"}
    )
    resourceType = ma.fields.String(
        validate=ma.validate.OneOf(list(AuditResource)), metadata={"enum_component": "AuditResourceType"}
    )
    resourceId = ma.fields.String(validate=ma.validate.Length(min=1, max=128))


@blp.route("/admin/audit-log")
class AuditLog(MethodView):
    @admin_only
    @blp.arguments(AuditLogArgsSchema, location="query")
    @blp.response(200, page_of(AuditEntrySchema))
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List audit entries, newest first, filtered by actor, action and resource (admin)."""
        where = AuditFilter(
            actor_id=args.get("actorId"),
            action=args.get("action"),
            resource_type=args.get("resourceType"),
            resource_id=args.get("resourceId"),
        )
        page, page_size = args["page"], args["pageSize"]
        items, total = service.list_audit_log(current_actor(), where, page, page_size)
        return page_body(items, total, page, page_size)
