"""Stock reconciliation runs (admin): start one, and read its record."""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint

from app.api.security import admin_only, current_actor
from app.domain.operations import Reconciliation
from app.services import reconciliation as service

blp = Blueprint(
    "reconciliations",
    __name__,
    description="Stock reconciliation: cancels orders whose payment is still PENDING after "
    "PAYMENT_PENDING_TIMEOUT_SECONDS (cancelReason PAYMENT_TIMEOUT), then corrects every product "
    "whose stock differs from the sum of its stock ledger. One run at a time: a run requested "
    'while another is running is recorded FAILED with the error "another reconciliation was running".',
)


class ReconciliationAcceptedSchema(ma.Schema):
    reconciliationId = ma.fields.UUID(attribute="id", required=True)


class DiscrepancySchema(ma.Schema):
    productId = ma.fields.String(required=True)
    stockBefore = ma.fields.Integer(required=True)
    stockAfter = ma.fields.Integer(required=True)


class ReconciliationSchema(ma.Schema):
    reconciliationId = ma.fields.UUID(attribute="id", required=True)
    status = ma.fields.String(required=True, metadata={"enum_component": "ReconciliationStatus"})
    startedAt = ma.fields.DateTime(attribute="started_at", required=True)
    finishedAt = ma.fields.DateTime(attribute="finished_at", allow_none=True, required=True)
    productsChecked = ma.fields.Integer(attribute="products_checked", required=True)
    ordersExpired = ma.fields.Integer(attribute="orders_expired", required=True)
    discrepancies = ma.fields.List(ma.fields.Nested(DiscrepancySchema), required=True)
    error = ma.fields.String(allow_none=True, metadata={"description": "Why a FAILED run failed"})


@blp.route("/admin/reconciliations")
class Reconciliations(MethodView):
    @admin_only
    @blp.response(202, ReconciliationAcceptedSchema)
    def post(self) -> Reconciliation:
        """Start a stock reconciliation in the background (admin)."""
        return service.request_reconciliation(current_actor())


@blp.route("/admin/reconciliations/<uuid:reconciliation_id>")
class ReconciliationById(MethodView):
    @admin_only
    @blp.response(200, ReconciliationSchema)
    def get(self, reconciliation_id: uuid.UUID) -> Any:
        """Read a reconciliation run's record (admin)."""
        return service.get_reconciliation(current_actor(), reconciliation_id)
