"""The API object, and every blueprint it serves, registered in one place."""

from __future__ import annotations

from flask_smorest import Api

from app.api.openapi import OmsApi

api = OmsApi()


def register_blueprints(api: Api) -> None:
    from app.api import (
        audit,
        auth,
        carts,
        features,
        notifications,
        ops,
        orders,
        payments,
        products,
        reconciliations,
        returns,
        shipments,
        stripe_webhooks,
        users,
        webhooks,
    )

    for blueprint in (ops.blp, users.blp, auth.blp, products.blp):
        api.register_blueprint(blueprint)
    for blueprint in (features.blp, notifications.blp, reconciliations.blp, audit.blp, webhooks.blp):
        api.register_blueprint(blueprint)
    for blueprint in (carts.blp, orders.blp):
        api.register_blueprint(blueprint)
    for blueprint in (payments.blp, stripe_webhooks.blp, shipments.blp, returns.blp):
        api.register_blueprint(blueprint)
    webhooks.document_payloads(api.spec)
