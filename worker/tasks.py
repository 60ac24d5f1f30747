"""Thin Celery tasks: each takes ids, calls one service and lets the service decide."""

from __future__ import annotations

import uuid

from celery import shared_task
from flask import current_app

from app.adapters import queue, webhook_http
from app.adapters.gateway import StripeGateway
from app.adapters.mailer import MailerError, SmtpMailer
from app.api import webhook_payloads
from app.domain.backoff import backoff_delay
from app.services import dispatch, idempotency, notifications, ops, payments, reconciliation, webhooks
from app.services.handlers import worker_handlers
from app.task_metrics import store_status_counts


@shared_task(name=queue.DISPATCH_EVENT, acks_late=True, bind=True, max_retries=10)
def dispatch_event(self, outbox_id: int) -> bool:  # type: ignore[no-untyped-def]
    """Run the handlers of one outbox message (idempotent)."""
    try:
        handlers = worker_handlers(payments.ChargeSettings.from_config(current_app.config))
        return dispatch.handle_message(outbox_id, handlers)
    except queue.BrokerUnavailable as exc:
        delay = backoff_delay(self.request.retries + 1, 1.0, cap=60.0, jitter="none")
        raise self.retry(exc=exc, countdown=delay) from exc


@shared_task(name=queue.RELAY_OUTBOX, acks_late=True)
def relay_outbox() -> int:
    """Beat: publish outbox messages that were not published after their commit."""
    return dispatch.relay_outbox()


@shared_task(name=queue.DELIVER_NOTIFICATION, acks_late=True, bind=True, max_retries=None)
def deliver_notification(self, notification_id: str) -> str:  # type: ignore[no-untyped-def]
    """Send one notification; a failure is retried with backoff until NOTIFY_MAX_ATTEMPTS (then FAILED)."""
    config = current_app.config
    result = notifications.deliver_notification(
        uuid.UUID(notification_id),
        mailer=SmtpMailer.from_config(config),
        max_attempts=int(config["NOTIFY_MAX_ATTEMPTS"]),
        backoff_seconds=float(config["NOTIFY_BACKOFF_SECONDS"]),
        secret_key=str(config["SECRET_KEY"]),
    )
    if result.retry_in is not None:
        # The attempt count lives in the database, so Celery's own retry limit is not used.
        raise self.retry(countdown=result.retry_in)
    return result.status


@shared_task(name=queue.RETRY_FAILED_NOTIFICATIONS, acks_late=True)
def retry_failed_notifications() -> int:
    """Beat: queue FAILED notifications younger than 24 h again (and PENDING ones whose delivery was lost)."""
    return notifications.retry_due_notifications()


@shared_task(name=queue.RECONCILE_STOCK, acks_late=True)
def reconcile_stock(reconciliation_id: str | None = None) -> str | None:
    """Beat (or admin): expire stale PENDING orders, then correct stock drift to the ledger."""
    run = reconciliation.run_reconciliation(
        reconciliation_id=uuid.UUID(reconciliation_id) if reconciliation_id else None,
        payment_timeout_seconds=int(current_app.config["PAYMENT_PENDING_TIMEOUT_SECONDS"]),
    )
    return run.status if run is not None else None


@shared_task(name=queue.CHARGE_PAYMENT, acks_late=True, bind=True, max_retries=None)
def charge_payment(self, payment_id: str, abandoned_intent: str | None = None) -> str:  # type: ignore[no-untyped-def]
    """Charge one payment (once: the gateway's idempotency key is the payment id)."""
    settings = payments.ChargeSettings.from_config(current_app.config)
    outcome = settings.charge(uuid.UUID(payment_id), abandoned_intent)
    if outcome.retry_in is not None:
        # The attempt count lives in the payment row, so Celery's own retry limit is not used.
        raise self.retry(countdown=outcome.retry_in)
    return outcome.status


@shared_task(name=queue.REFUND_PAYMENT, acks_late=True, bind=True, max_retries=None)
def refund_payment(self, payment_id: str, refund_id: str | None = None) -> str:  # type: ignore[no-untyped-def]
    """Send one refund (under its key ``refund-<refundId>``), or refund the rest of a cancelled
    order's payment; a pending one is asked about again."""
    config = current_app.config
    outcome = payments.refund_payment(
        uuid.UUID(payment_id),
        refund_id=uuid.UUID(refund_id) if refund_id else None,
        gateway=StripeGateway.from_config(config),
        attempt=self.request.retries + 1,
        max_attempts=int(config["PAYMENT_MAX_ATTEMPTS"]),
        backoff_seconds=float(config["PAYMENT_BACKOFF_SECONDS"]),
    )
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return outcome.status


@shared_task(name=queue.SWEEP_PENDING_PAYMENTS, acks_late=True)
def sweep_pending_payments() -> dict[str, int]:
    """Beat: queue charges whose task was lost and refunds that were never done."""
    config = current_app.config
    return payments.sweep_pending_payments(
        max_attempts=int(config["PAYMENT_MAX_ATTEMPTS"]), idle_seconds=float(config["PAYMENT_SWEEP_SECONDS"])
    )


@shared_task(name=queue.PURGE_EXPIRED, acks_late=True)
def purge_expired() -> int:
    """Beat (hourly): forget checkout idempotency keys older than their 24 h."""
    return idempotency.purge_expired()


@shared_task(name=queue.REFRESH_STATUS_COUNTS, acks_late=True)
def refresh_status_counts() -> None:
    """Beat: count payments and notifications by status into Redis, where /metrics reads them."""
    counts = ops.status_counts()
    store_status_counts(str(current_app.config["REDIS_URL"]), counts["payments"], counts["notifications"])


@shared_task(name=queue.DELIVER_WEBHOOK, acks_late=True, bind=True, max_retries=None)
def deliver_webhook(self, delivery_id: str) -> str:  # type: ignore[no-untyped-def]
    """One attempt of a webhook delivery (queue ``oms.webhooks``); the state lives in its row."""
    outcome = webhooks.deliver(
        uuid.UUID(delivery_id),
        settings=webhooks.DeliverySettings.from_config(current_app.config),
        render=webhook_payloads.render,
        send=webhook_http.post,
    )
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return outcome.status


@shared_task(name=queue.QUEUE_DUE_WEBHOOKS, acks_late=True)
def queue_due_webhooks() -> int:
    """Beat: queue webhook deliveries that are due (long retries, lost tasks)."""
    return webhooks.queue_due_deliveries()


@shared_task(name=queue.EMAIL_ADMINS_WEBHOOK_DISABLED, acks_late=True, bind=True, max_retries=None)
def email_admins_webhook_disabled(self, webhook_id: str, url: str, reason: str, event_id: int) -> int:  # type: ignore[no-untyped-def]
    """Tell every admin that an endpoint was disabled; retried with backoff while SMTP fails."""
    config = current_app.config
    try:
        return webhooks.email_admins_endpoint_disabled(
            webhook_id, url, reason, event_id, SmtpMailer.from_config(config)
        )
    except MailerError as exc:
        if self.request.retries + 1 >= int(config["NOTIFY_MAX_ATTEMPTS"]):
            raise
        delay = backoff_delay(self.request.retries + 1, float(config["NOTIFY_BACKOFF_SECONDS"]), cap=3600.0)
        raise self.retry(exc=exc, countdown=delay) from exc
