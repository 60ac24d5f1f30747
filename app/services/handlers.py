"""The observer's registry: which handlers react to which domain event. Handlers must be idempotent.

The top of the service layer: it imports the use cases whose handlers it lists; nothing in
``app.services`` imports it (the worker passes it to ``dispatch.handle_message``).
"""

from __future__ import annotations

from app.domain import events
from app.services.dispatch import Handler
from app.services.notifications import alert_admins, notify_customer
from app.services.payments import on_order_cancelled, on_order_placed, on_payment_retried, on_refund_requested

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
    events.PaymentRetried: [on_payment_retried],
    events.PaymentActionRequired: [notify_customer],
    events.PaymentDisputed: [alert_admins],
    events.PaymentDisputeClosed: [alert_admins],
    events.PaymentPartiallyRefunded: [notify_customer],
    events.RefundFailed: [alert_admins],
    events.AdminAlerted: [notify_customer],
    # RefundSucceeded: no handler here yet (the returns feature marks its return REFUNDED on it).
    # Account e-mails (issue 17): the token's secret is put into the e-mail at delivery only.
    events.PasswordResetRequested: [notify_customer],
    events.EmailVerificationRequested: [notify_customer],
}
