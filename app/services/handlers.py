"""The observer's registry: which handlers react to which domain event. Handlers must be idempotent.

The top of the service layer: it imports the use cases whose handlers it lists; nothing in
``app.services`` imports it (the worker passes it to ``dispatch.handle_message``).
"""

from __future__ import annotations

from app.domain import events
from app.domain.webhooks import WEBHOOK_EVENTS
from app.services.dispatch import Handler, HandlerRegistry
from app.services.notifications import alert_admins, notify_customer
from app.services.payments import (
    ChargeSettings,
    charge_on_order_placed,
    on_order_cancelled,
    on_order_placed,
    on_payment_retried,
    on_refund_requested,
)
from app.services.returns import on_refund_succeeded
from app.services.webhooks import fan_out, on_endpoint_disabled

EVENT_HANDLERS: dict[type[events.Event], list[Handler]] = {
    # Money first: a failing notification must not delay a charge or a refund.
    events.OrderPlaced: [on_order_placed, notify_customer],
    events.PaymentCompleted: [notify_customer],
    events.PaymentFailed: [notify_customer],
    events.OrderShipped: [notify_customer],
    events.OrderDelivered: [notify_customer],
    events.OrderCancelled: [on_order_cancelled, notify_customer],
    events.PaymentRefunded: [notify_customer],
    events.RefundRequested: [on_refund_requested],
    # Account e-mails (issue 17): the token's secret is put into the e-mail at delivery only.
    events.PasswordResetRequested: [notify_customer],
    events.EmailVerificationRequested: [notify_customer],
    events.PaymentRetried: [on_payment_retried],
    events.PaymentActionRequired: [notify_customer],
    events.PaymentDisputed: [alert_admins],
    events.PaymentDisputeClosed: [alert_admins],
    events.PaymentPartiallyRefunded: [notify_customer],
    events.RefundFailed: [alert_admins],
    events.AdminAlerted: [notify_customer],
    events.RefundSucceeded: [on_refund_succeeded],
    events.ReturnRequested: [notify_customer],
    events.ReturnReceived: [notify_customer],
    events.ReturnRefunded: [notify_customer],
    events.ProductLowStock: [alert_admins],
    events.WebhookEndpointDisabled: [on_endpoint_disabled],
}

# Webhooks last: a slow fan-out never delays a charge or an e-mail. Every event of the mapping
# table (app.domain.webhooks.WEBHOOK_EVENTS) fans out, so a new mapping needs no line here.
for _event_type in WEBHOOK_EVENTS:
    EVENT_HANDLERS.setdefault(_event_type, []).append(fan_out)


def worker_handlers(charge: ChargeSettings) -> HandlerRegistry:
    """``EVENT_HANDLERS`` as the worker runs them: a new order is charged in its OrderPlaced
    dispatch (``charge_on_order_placed``), not by a second task queued behind it."""
    charge_now = charge_on_order_placed(charge)
    return {
        event_type: [charge_now if handler is on_order_placed else handler for handler in registered]
        for event_type, registered in EVENT_HANDLERS.items()
    }
