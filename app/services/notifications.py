"""Notifications: the observer that turns domain events into e-mails, and their delivery.

``notify_customer`` is registered in the message bus for every customer-facing event. It runs
after the event's transaction committed (dispatched from the outbox), creates at most one
notification per event and channel (``ON CONFLICT DO NOTHING`` on the unique index, keyed by the
outbox id) and queues its delivery. A re-delivered event finds the notification and, while it is
still PENDING, queues the delivery again — harmless, since delivery locks the row and never
sends a SENT notification twice.

Users whose data were erased have no e-mail address: their notification is recorded FAILED
with ``lastError`` "no recipient" (an audit trail that the event happened) and never retried.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any, Protocol

from app.adapters.email_templates import render_email, render_html
from app.adapters.mailer import MailerError, MailerRejected, OutgoingEmail
from app.adapters.queue import DELIVER_NOTIFICATION, BrokerUnavailable, send_task
from app.domain.accounts import TOKEN_EVENTS, TOKEN_MASK, token_secret
from app.domain.actors import Actor
from app.domain.base import new_id, utcnow
from app.domain.errors import Conflict, NotFound
from app.domain.events import (
    AdminAlerted,
    Event,
    OrderCancelled,
    OrderShipped,
    PaymentDisputeClosed,
    PaymentDisputed,
    PaymentFailed,
    ProductLowStock,
    RefundFailed,
    ReturnReceived,
    ReturnRefunded,
    ReturnRequested,
)
from app.domain.notifications import (
    CHANNEL_EMAIL,
    N_FAILED,
    N_PENDING,
    N_SENT,
    NO_RECIPIENT,
    Notification,
    retry_delay,
)
from app.domain.payments import COMPLETED, REFUNDED
from app.log import get_logger
from app.repositories.notifications import NotificationRepository, OrderFacts
from app.services.dispatch import AfterCommit, EventContext, in_transaction
from app.services.unit_of_work import ReadOnlyUnitOfWork, UnitOfWork

log = get_logger(__name__)

# FAILED notifications younger than this are queued again by the retry job.
RETRY_WINDOW = timedelta(hours=24)
# A PENDING notification whose attempt is overdue by this much lost its queued delivery.
LOST_DELIVERY_GRACE = timedelta(minutes=5)
RETRY_BATCH = 500


class Mailer(Protocol):
    def send(self, email: OutgoingEmail) -> None: ...


# ---- the observer ---------------------------------------------------------------------------------


@in_transaction
def notify_customer(event: Event, context: EventContext, uow: UnitOfWork) -> AfterCommit | None:
    """Handler: one e-mail notification per event (idempotent), then queue its delivery."""
    notification = record_notification(uow, event, context.event_id)
    if notification is None or not notification.deliverable:
        return None
    # Read before the commit expires the object: after it, each attribute is a new SELECT.
    # BrokerUnavailable from the publish propagates: the event stays unprocessed and is
    # dispatched again, and the notification, still PENDING, is queued then.
    return partial(send_task, DELIVER_NOTIFICATION, [str(notification.id)], request_id=context.request_id)


def record_notification(uow: UnitOfWork, event: Event, event_id: int) -> Notification | None:
    """Create the notification of ``event`` unless it exists; returns it (None: no such user).

    No look-up first: the insert is ``ON CONFLICT DO NOTHING`` on (event, channel), so a repeated
    event (rare) renders once more and then reads the row that exists; a new one (every time but
    that) saves a statement."""
    repo = uow.notifications
    user_id = uuid.UUID(str(event.user_id))  # type: ignore[attr-defined]
    user = repo.user(user_id)
    if user is None:
        log.warning("notification_without_user", notification_event=event.name, user_id=str(user_id))
        return repo.find_by_event(event_id, CHANNEL_EMAIL)
    order_id_raw = getattr(event, "order_id", None)
    order_id = uuid.UUID(str(order_id_raw)) if order_id_raw else None
    facts = repo.order_facts(order_id) if order_id else None
    token_id_raw = getattr(event, "token_id", None)
    token_id = uuid.UUID(str(token_id_raw)) if token_id_raw else None
    if token_id is not None:
        # The secret is masked here: it is put into the e-mail at delivery only.
        ttl_seconds = int(getattr(event, "ttl_seconds", 0) or 0)
        context = {"name": user.name, "token": TOKEN_MASK, "ttl_minutes": max(1, ttl_seconds // 60)}
    else:
        context = _template_context(event, user.name, facts)
    if isinstance(event, OrderShipped):
        context["shipment"] = _shipment_context(repo, event, facts)
    rendered = render_email(event.name, context)
    now = utcnow()
    recipient = user.email if user.deleted_at is None else None
    values: dict[str, Any] = {
        "id": new_id(),
        "user_id": user_id,
        "order_id": order_id,
        "event_id": event_id,
        "event": event.name,
        "channel": CHANNEL_EMAIL,
        "recipient": recipient,
        "subject": rendered.subject,
        "message": rendered.text,
        "status": N_PENDING if recipient else N_FAILED,
        "attempts": 0,
        "last_error": None if recipient else NO_RECIPIENT,
        "created_at": now,
        "next_attempt_at": now if recipient else None,
        "account_token_id": token_id,
    }
    if repo.insert_if_absent(values) is not None:
        return Notification(**values)  # what was just written (transient: not read back)
    return repo.find_by_event(event_id, CHANNEL_EMAIL)  # recorded before (or concurrently): that row


def _money(value: Decimal | None) -> str:
    return f"{(value or Decimal('0')):.2f}"


def _template_context(event: Event, name: str | None, facts: OrderFacts | None) -> dict[str, Any]:
    order: dict[str, Any] = {"id": "", "reference": "", "currency": "", "total": "0.00", "lines": []}
    refund_pending = False
    if facts is not None:
        order = {
            "id": str(facts.order.id),
            "reference": str(facts.order.id)[-8:].upper(),
            "currency": facts.order.currency,
            "total": _money(facts.order.total_amount),
            "lines": [
                {"name": i.product_name, "quantity": i.quantity, "subtotal": _money(i.line_total)}
                for i in facts.items
            ],
        }
        refund_pending = facts.payment is not None and facts.payment.status in (COMPLETED, REFUNDED)
    reason = None
    if isinstance(event, OrderCancelled | PaymentFailed):
        reason = event.reason
    context: dict[str, Any] = {
        "name": name,
        "order": order,
        "reason": reason,
        "payment_refund_pending": refund_pending,
        "amount": getattr(event, "amount", None),
        "alert": getattr(event, "alert", None),
        "detail": getattr(event, "detail", None),
        "payment_due_by": getattr(event, "payment_due_by", None),
    }
    if isinstance(event, ReturnRequested | ReturnReceived | ReturnRefunded):
        context["ret"] = {"id": event.return_id, "refund_amount": _money(Decimal(event.refund_amount))}
    return context


def _shipment_context(
    repo: NotificationRepository, event: OrderShipped, facts: OrderFacts | None
) -> dict[str, Any]:
    """Carrier and tracking, and the lines of the shipment when it is only part of the order."""
    lines = repo.shipment_lines(uuid.UUID(event.shipment_id)) if event.shipment_id else []
    ordered = sum(item.quantity for item in facts.items) if facts is not None else 0
    partial = bool(lines) and sum(quantity for _, quantity in lines) < ordered
    return {
        "carrier": event.carrier,
        "tracking_number": event.tracking_number,
        "tracking_url": event.tracking_url,
        "lines": [{"name": name, "quantity": quantity} for name, quantity in lines] if partial else [],
    }


def alert_admins(event: Event, context: EventContext) -> None:
    """Handler: e-mail every admin about an event that needs a person (a refund the gateway
    failed, a dispute): one ``AdminAlerted`` per admin, each then a notification of its own
    through ``notify_customer``. Once per event: the event's message is locked and the alerts
    it already recorded are looked for."""
    ids = {k: str(v) for k, v in event.to_payload().items() if k in ("order_id", "payment_id")}
    with UnitOfWork() as uow:
        uow.outbox.lock_message(context.event_id)
        if uow.outbox.recorded_from(AdminAlerted.__name__, context.event_id):
            return
        detail = _alert_detail(event)
        for admin_id in uow.users.admin_ids():
            uow.record(
                AdminAlerted(
                    user_id=str(admin_id),
                    order_id=ids.get("order_id", ""),
                    payment_id=ids.get("payment_id", ""),
                    alert=event.name,
                    detail=detail,
                    source_event_id=context.event_id,
                )
            )
        uow.commit()


def _alert_detail(event: Event) -> str:
    if isinstance(event, RefundFailed):
        reason = event.reason or "no reason given"
        return f"refund {event.refund_id} of {event.amount} failed at the gateway: {reason}"
    if isinstance(event, PaymentDisputed | PaymentDisputeClosed):
        return f"dispute of {event.amount}: status {event.status}, reason {event.reason}"
    if isinstance(event, ProductLowStock):
        return (
            f"{event.product_name} is low on stock: {event.stock} left (threshold "
            f"{event.low_stock_threshold}). Product {event.product_id}: restock it with POST "
            f"/products/{event.product_id}/stock-movements; GET /admin/low-stock lists every such product."
        )
    return ", ".join(f"{k}={v}" for k, v in event.to_payload().items() if k not in ("user_id",))


# ---- delivery ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryResult:
    status: str  # SENT, FAILED, PENDING (retry due in ``retry_in`` seconds) or SKIPPED
    retry_in: float | None = None


SKIPPED = "SKIPPED"


def deliver_notification(
    notification_id: uuid.UUID,
    *,
    mailer: Mailer,
    max_attempts: int,
    backoff_seconds: float,
    secret_key: str | None = None,
) -> DeliveryResult:
    """One delivery attempt. The row stays locked while the message is handed to SMTP.

    So two workers never send the same notification at once (the second skips it), and a SENT
    one is never sent again. If the commit after a successful send is lost, the next attempt
    sends again with the same ``Message-ID``, which lets a receiver recognise the duplicate.
    """
    with UnitOfWork(relay_after_commit=False) as uow:
        notification = uow.notifications.lock(notification_id, skip_locked=True)
        if notification is None or notification.status != N_PENDING:
            return DeliveryResult(SKIPPED)
        if notification.recipient is None:
            notification.mark_undeliverable(NO_RECIPIENT)
            uow.commit()
            return DeliveryResult(N_FAILED)
        text = notification.message
        if notification.account_token_id is not None:
            purpose = TOKEN_EVENTS.get(notification.event)
            if purpose is None or not secret_key:
                notification.mark_undeliverable("token e-mail cannot be built")
                uow.commit()
                return DeliveryResult(N_FAILED)
            # The one place the secret exists: the e-mail being sent (never stored or logged).
            text = text.replace(TOKEN_MASK, token_secret(secret_key, purpose, notification.account_token_id))
        email = OutgoingEmail(
            message_id=str(notification.id),
            recipient=notification.recipient,
            subject=notification.subject,
            text=text,
            html=render_html(notification.subject, text, str(notification.id)),
        )
        now = utcnow()
        try:
            mailer.send(email)
        except MailerRejected as exc:
            notification.record_rejection(str(exc), now=now)
            uow.commit()
            log.warning("notification_rejected", notification_id=str(notification_id), error=str(exc))
            return DeliveryResult(N_FAILED)
        except MailerError as exc:
            delay = retry_delay(notification.attempts + 1, backoff_seconds)
            again = notification.record_failure(str(exc), now=now, max_attempts=max_attempts, delay=delay)
            attempts = notification.attempts
            uow.commit()
            log.warning(
                "notification_send_failed",
                notification_id=str(notification_id),
                attempts=attempts,
                error=str(exc),
                retry_in=delay if again else None,
            )
            return DeliveryResult(N_PENDING, delay) if again else DeliveryResult(N_FAILED)
        notification.mark_sent(now)
        uow.commit()
        log.info("notification_sent", notification_id=str(notification_id))
        return DeliveryResult(N_SENT)


def retry_due_notifications(now: datetime | None = None) -> int:
    """Beat job: queue FAILED notifications younger than 24 h again (each gets a new round of
    ``NOTIFY_MAX_ATTEMPTS`` attempts), and PENDING ones whose queued delivery was lost."""
    now = now or utcnow()
    with UnitOfWork(relay_after_commit=False) as uow:
        due = uow.notifications.lock_due_for_retry(
            created_after=now - RETRY_WINDOW, overdue_before=now - LOST_DELIVERY_GRACE, limit=RETRY_BATCH
        )
        for notification in due:
            if notification.status == N_FAILED:
                notification.start_new_round(now)
            else:
                notification.next_attempt_at = now
        ids = [str(n.id) for n in due]
        uow.commit()
    queued = 0
    for notification_id in ids:
        try:
            send_task(DELIVER_NOTIFICATION, [notification_id])
        except BrokerUnavailable:
            break  # they are due: the next run queues them
        queued += 1
    if ids:
        log.info("notifications_requeued", count=queued, due=len(ids))
    return queued


def retry_notification(actor: Actor, notification_id: uuid.UUID) -> Notification:
    """Admin: queue one notification again now (FAILED → a new round; PENDING → queued again)."""
    actor.require_staff()
    with UnitOfWork(relay_after_commit=False) as uow:
        notification = uow.notifications.lock(notification_id)
        if notification is None:
            raise NotFound("The notification was not found")
        if notification.status == N_SENT:
            raise Conflict("The notification was already sent; it is never sent twice")
        if notification.recipient is None:
            raise Conflict("The notification has no recipient (the user's data were erased)")
        now = utcnow()
        if notification.status == N_FAILED:
            notification.start_new_round(now)
        else:
            notification.next_attempt_at = now
        uow.commit()
    try:
        send_task(DELIVER_NOTIFICATION, [str(notification_id)])
    except BrokerUnavailable:
        # Committed as due: the retry job queues it once the broker is back.
        log.warning("notification_retry_not_queued", notification_id=str(notification_id))
    return notification


def list_user_notifications(
    actor: Actor, user_id: uuid.UUID, page: int, page_size: int
) -> tuple[list[Notification], int]:
    """A user's notifications, newest first: the user's own, or any user's for an admin."""
    if not actor.may_access(user_id):
        raise NotFound("The user was not found")
    with ReadOnlyUnitOfWork() as uow:
        if uow.notifications.user(user_id) is None:
            raise NotFound("The user was not found")
        return uow.notifications.page_for_user(user_id, page, page_size)


def list_notifications(
    actor: Actor,
    *,
    status: str | None,
    event: str | None,
    user_id: uuid.UUID | None,
    page: int,
    page_size: int,
) -> tuple[list[Notification], int]:
    """Admin: every notification, filtered by status, event and user, newest first."""
    actor.require_staff()
    with ReadOnlyUnitOfWork() as uow:
        return uow.notifications.page(
            status=status, event=event, user_id=user_id, page=page, page_size=page_size
        )
