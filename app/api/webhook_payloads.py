"""What ``data`` of a webhook holds, rendered by the API's own schemas (one source for the shape).

Order events carry the order as an admin's ``GET /orders/{id}`` renders it (``OrderSchema``);
payment events the payment as ``GET /orders/{id}/payment`` renders it (``PaymentSchema``); return
events the return as ``GET /orders/{id}/returns/{returnId}`` renders it (``ReturnSchema``). The
worker injects ``render`` into the delivery service.
"""

from __future__ import annotations

import uuid
from typing import Any

from app.api.orders import OrderSchema
from app.api.payments import PaymentSchema
from app.api.returns import ReturnSchema
from app.domain.actors import SYSTEM
from app.domain.errors import NotFound
from app.domain.webhooks import ORDER, PAYMENT, RETURN
from app.services import orders, payments, returns


def render(kind: str, resource_id: str) -> dict[str, Any] | None:
    """The resource as the API shows it to an admin; None when it no longer exists."""
    try:
        key = uuid.UUID(resource_id)
        if kind == ORDER:
            return OrderSchema().dump(orders.get_order(SYSTEM, key))  # type: ignore[no-any-return]
        if kind == PAYMENT:
            return PaymentSchema().dump(payments.get_payment(SYSTEM, key))  # type: ignore[no-any-return]
        if kind == RETURN:
            return ReturnSchema().dump(returns.find_return(SYSTEM, key))  # type: ignore[no-any-return]
    except (NotFound, ValueError):
        return None
    raise ValueError(f"unknown webhook data kind {kind!r}")
