"""Feature toggles (admin): list them and switch them on or off."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint

from app.api.carts import StrictInteger
from app.api.schemas import StrictSchema
from app.api.security import admin_only, current_actor
from app.domain.operations import Feature
from app.services import features as service

blp = Blueprint(
    "features",
    __name__,
    description="Feature toggles, stored in Postgres and read through a cache of at most "
    "FEATURE_CACHE_SECONDS in every process. An enabled feature is on for a user when a stable hash "
    "of (feature name, userId) falls below its `rolloutPercent` (so each user keeps the same answer; "
    "100 = everyone). A feature off for the caller answers 503 problem: `checkout` off → POST /orders "
    "503. `returns` and `payment-retry` guard the customer features of those names.",
)


class FeatureSchema(ma.Schema):
    name = ma.fields.String(required=True, metadata={"example": "checkout"})
    enabled = ma.fields.Boolean(required=True)
    rolloutPercent = ma.fields.Integer(
        attribute="rollout_percent",
        required=True,
        metadata={"description": "Percentage of users (0-100) an enabled feature is on for", "example": 100},
    )
    description = ma.fields.String(required=True)


class FeatureListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(FeatureSchema), required=True)


class JsonBoolean(ma.fields.Boolean):
    """Only JSON ``true``/``false``: ``"true"`` or ``1`` are validation errors, not coerced."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class FeatureUpdateSchema(StrictSchema):
    enabled = JsonBoolean(required=True)
    rolloutPercent = StrictInteger(
        validate=ma.validate.Range(min=0, max=100),
        metadata={
            "description": "0-100: the share of users an enabled feature is on for. Left out, the "
            "stored value stays.",
            "example": 10,
        },
    )


@blp.route("/admin/features")
class Features(MethodView):
    @admin_only
    @blp.response(200, FeatureListSchema)
    def get(self) -> dict[str, Any]:
        """List the feature toggles (admin)."""
        return {"items": service.list_features(current_actor())}


@blp.route("/admin/features/<string:name>")
class FeatureByName(MethodView):
    @admin_only
    @blp.arguments(FeatureUpdateSchema)
    @blp.response(200, FeatureSchema)
    @blp.alt_response(404, response="NOT_FOUND", description="No feature has this name")
    def put(self, data: dict[str, Any], name: str) -> Feature:
        """Switch a feature toggle on or off and set its rollout percentage (admin)."""
        return service.set_feature(current_actor(), name, data["enabled"], data.get("rolloutPercent"))
