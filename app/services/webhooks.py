"""Outbound webhooks (SPEC §5.4): the admin's endpoints, the fan-out from the outbox, the delivery.

- Fan-out (``fan_out``, an event handler): one ``WebhookMessage`` per outbox event (unique on the
  outbox id) and one delivery per enabled, subscribed endpoint (unique on (endpoint, message)),
  both ``INSERT … ON CONFLICT DO NOTHING``: a redelivered event adds nothing.
- Delivery (``deliver``, the ``oms.webhooks`` worker): claims the delivery under a lease (at most
  ``WEBHOOK_ENDPOINT_CONCURRENCY`` leases per endpoint), checks the URL again (SSRF), signs and
  POSTs it, then records the outcome: SUCCEEDED, a retry after the next delay of the schedule, or
  FAILED; 410 or ``WEBHOOK_DISABLE_AFTER_FAILURES`` failed deliveries in a row disable the endpoint
  (``WebhookEndpointDisabled`` → the admins are e-mailed).
- The beat job (``queue_due_deliveries``) queues what is due and not queued: retries past the
  broker's countdown limit, deliveries whose task was lost.

``data`` of order events is rendered at the first attempt by a renderer the worker injects (the
API's own schema for ``GET /orders/{id}``) and then stored: every retry sends the same body.
"""

from __future__ import annotations

import hashlib
import html
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol

from app.adapters.mailer import OutgoingEmail
from app.adapters.outbound_urls import CheckedUrl, UnsafeUrl, check_url
from app.adapters.queue import (
    DELIVER_WEBHOOK,
    EMAIL_ADMINS_WEBHOOK_DISABLED,
    MAX_COUNTDOWN_SECONDS,
    BrokerUnavailable,
    send_task,
)
from app.adapters.webhook_http import HttpResult
from app.domain.actors import Actor
from app.domain.audit import AuditAction, AuditResource, created, diff
from app.domain.base import utcnow
from app.domain.errors import NotFound, ValidationFailed
from app.domain.events import Event, WebhookEndpointDisabled
from app.domain.webhooks import (
    EVENT,
    FAILED,
    GONE,
    PENDING,
    SUCCEEDED,
    TEST_EVENT,
    WEBHOOK_EVENTS,
    ClaimedDelivery,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookMessage,
    event_data,
    is_success,
    message_body,
    new_secret,
    next_retry_delay,
    signature_header,
    subscribes,
    unknown_event_types,
)
from app.log import get_logger
from app.services.dispatch import AfterCommit, EventContext, in_transaction
from app.services.unit_of_work import ReadOnlyUnitOfWork, StatementUnitOfWork, UnitOfWork

log = get_logger(__name__)

# A claimed delivery's lease outlives the request by this margin (then another worker may retry).
LEASE_MARGIN_SECONDS = 30.0
# A delivery refused a slot (the endpoint's bound reached) tries again after this.
BUSY_RETRY_SECONDS = 1.0
# The beat job does not queue again what it (or the fan-out) queued less than this ago.
REQUEUE_AFTER = timedelta(seconds=60)
SWEEP_BATCH = 500
SEND_DISABLED = "endpoint disabled"

Renderer = Callable[[str, str], dict[str, Any] | None]  # (data kind, resource id) → data


class HttpSender(Protocol):
    def __call__(
        self, target: CheckedUrl, headers: dict[str, str], body: bytes, timeout: float
    ) -> HttpResult: ...


class Mailer(Protocol):
    def send(self, email: OutgoingEmail) -> None: ...


@dataclass(frozen=True)
class DeliverySettings:
    timeout: float
    retry_schedule: tuple[int, ...]
    disable_after_failures: int
    allow_private_urls: bool
    require_https: bool
    endpoint_concurrency: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DeliverySettings:
        return cls(
            timeout=float(config["WEBHOOK_TIMEOUT_SECONDS"]),
            retry_schedule=tuple(config["WEBHOOK_RETRY_SCHEDULE"]),
            disable_after_failures=int(config["WEBHOOK_DISABLE_AFTER_FAILURES"]),
            allow_private_urls=bool(config["WEBHOOK_ALLOW_PRIVATE_URLS"]),
            require_https=config["APP_ENV"] == "production",
            endpoint_concurrency=int(config["WEBHOOK_ENDPOINT_CONCURRENCY"]),
        )


@dataclass(frozen=True)
class UrlPolicy:
    allow_private: bool
    require_https: bool

    def check(self, url: str) -> CheckedUrl:
        return check_url(url, allow_private=self.allow_private, require_https=self.require_https)


# ---- admin: endpoints ---------------------------------------------------------------------------


@dataclass
class CreatedEndpoint:
    endpoint: WebhookEndpoint
    secret: str  # shown once


def _checked_events(requested: Sequence[str]) -> list[str]:
    unknown = unknown_event_types(requested)
    if unknown:
        raise ValidationFailed(
            "Unknown event types", {"events": [f"Unknown event type: {name}." for name in unknown]}
        )
    return list(dict.fromkeys(requested))


def _checked_url(url: str, policy: UrlPolicy) -> str:
    try:
        policy.check(url)
    except UnsafeUrl as exc:
        raise ValidationFailed("The URL may not receive webhooks", {"url": [str(exc)]}) from exc
    return url


def _audited(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {
        "url": endpoint.url,
        "events": list(endpoint.event_types),
        "description": endpoint.description,
        "enabled": endpoint.enabled,
    }


def create_endpoint(
    actor: Actor, url: str, event_types: Sequence[str], description: str, policy: UrlPolicy
) -> CreatedEndpoint:
    actor.require_staff()
    checked_events = _checked_events(event_types)
    _checked_url(url, policy)
    now = utcnow()
    secret = new_secret()
    with UnitOfWork() as uow:
        endpoint = WebhookEndpoint(
            url=url,
            event_types=checked_events,
            description=description,
            enabled=True,
            secret=secret,
            consecutive_failures=0,
            created_at=now,
            updated_at=now,
        )
        uow.webhooks.add(endpoint)
        uow.audit(
            actor,
            AuditAction.WEBHOOK_CREATED,
            AuditResource.WEBHOOK,
            endpoint.id,
            created(_audited(endpoint)),
        )
        uow.commit()
    return CreatedEndpoint(endpoint, secret)


def list_endpoints(actor: Actor, page: int, page_size: int) -> tuple[list[WebhookEndpoint], int]:
    actor.require_staff()
    with ReadOnlyUnitOfWork() as uow:
        return uow.webhooks.page(page, page_size)


def get_endpoint(actor: Actor, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    actor.require_staff()
    with ReadOnlyUnitOfWork() as uow:
        endpoint = uow.webhooks.get(endpoint_id)
    if endpoint is None:
        raise NotFound("The webhook endpoint was not found")
    return endpoint


def update_endpoint(
    actor: Actor, endpoint_id: uuid.UUID, changes: Mapping[str, Any], policy: UrlPolicy
) -> WebhookEndpoint:
    """PATCH ``url``, ``events``, ``description``, ``enabled``; enabling again clears the failure count."""
    actor.require_staff()
    if "events" in changes:
        changes = {**changes, "events": _checked_events(changes["events"])}
    if "url" in changes:
        _checked_url(changes["url"], policy)
    with UnitOfWork() as uow:
        endpoint = uow.webhooks.lock(endpoint_id)
        if endpoint is None:
            raise NotFound("The webhook endpoint was not found")
        before = _audited(endpoint)
        if "url" in changes:
            endpoint.url = changes["url"]
        if "events" in changes:
            endpoint.event_types = changes["events"]
        if "description" in changes:
            endpoint.description = changes["description"]
        if "enabled" in changes and changes["enabled"] != endpoint.enabled:
            endpoint.enabled = changes["enabled"]
            if endpoint.enabled:
                endpoint.consecutive_failures = 0
                endpoint.disabled_reason = None
        changed = diff(before, _audited(endpoint))
        if changed:
            endpoint.updated_at = utcnow()
            uow.audit(actor, AuditAction.WEBHOOK_UPDATED, AuditResource.WEBHOOK, endpoint.id, changed)
        uow.commit()
    return endpoint


def delete_endpoint(actor: Actor, endpoint_id: uuid.UUID) -> None:
    """The endpoint and its delivery log go; the audit log keeps that it existed."""
    actor.require_staff()
    with UnitOfWork() as uow:
        endpoint = uow.webhooks.lock(endpoint_id)
        if endpoint is None:
            raise NotFound("The webhook endpoint was not found")
        uow.audit(
            actor,
            AuditAction.WEBHOOK_DELETED,
            AuditResource.WEBHOOK,
            endpoint.id,
            diff(_audited(endpoint), {}),
        )
        uow.webhooks.delete(endpoint)
        uow.commit()


def rotate_secret(actor: Actor, endpoint_id: uuid.UUID) -> CreatedEndpoint:
    """A new secret; the previous one keeps signing beside it for 24 h (two signatures)."""
    actor.require_staff()
    now = utcnow()
    with UnitOfWork() as uow:
        endpoint = uow.webhooks.lock(endpoint_id)
        if endpoint is None:
            raise NotFound("The webhook endpoint was not found")
        secret = endpoint.rotate_secret(now)
        # The secrets themselves stay out of the log.
        overlap = endpoint.previous_secret_expires_at
        uow.audit(
            actor,
            AuditAction.WEBHOOK_SECRET_ROTATED,
            AuditResource.WEBHOOK,
            endpoint.id,
            {"previousSecretExpiresAt": {"old": None, "new": overlap.isoformat() if overlap else None}},
        )
        uow.commit()
    return CreatedEndpoint(endpoint, secret)


# ---- admin: test event, deliveries, retry ----------------------------------------------------------


@dataclass(frozen=True)
class DeliveryView:
    delivery: WebhookDelivery
    message: WebhookMessage

    @property
    def event_id(self) -> str:
        return self.message.webhook_id

    @property
    def event_type(self) -> str:
        return self.message.event_type


def send_test_event(actor: Actor, endpoint_id: uuid.UUID) -> DeliveryView:
    """``webhook.test`` to this endpoint, whatever it subscribes to (and even if disabled)."""
    actor.require_staff()
    now = utcnow()
    with UnitOfWork() as uow:
        endpoint = uow.webhooks.get(endpoint_id)
        if endpoint is None:
            raise NotFound("The webhook endpoint was not found")
        message = WebhookMessage(
            event_type=TEST_EVENT,
            data_kind=EVENT,
            data={"webhookId": str(endpoint.id), "message": "A test event sent by an administrator"},
            occurred_at=now,
        )
        uow.webhooks.add_message(message)
        delivery = WebhookDelivery(
            endpoint_id=endpoint.id,
            message_id=message.id,
            status=PENDING,
            attempts=0,
            retries_used=0,
            next_attempt_at=now,
            queued_at=now,
            created_at=now,
        )
        uow.webhooks.add_delivery(delivery)
        uow.commit()
    _queue([delivery.id])
    return DeliveryView(delivery, message)


def list_deliveries(
    actor: Actor, endpoint_id: uuid.UUID, status: str | None, page: int, page_size: int
) -> tuple[list[DeliveryView], int]:
    actor.require_staff()
    with ReadOnlyUnitOfWork() as uow:
        if uow.webhooks.get(endpoint_id) is None:
            raise NotFound("The webhook endpoint was not found")
        rows, total = uow.webhooks.deliveries_page(endpoint_id, status, page, page_size)
    return [DeliveryView(d, m) for d, m in rows], total


def retry_delivery(
    actor: Actor, endpoint_id: uuid.UUID, delivery_id: uuid.UUID, schedule: Sequence[int]
) -> DeliveryView:
    """One more attempt now, whatever the delivery's status (a failure then leaves it FAILED)."""
    actor.require_staff()
    now = utcnow()
    with UnitOfWork() as uow:
        delivery = uow.webhooks.lock_delivery(delivery_id)
        if delivery is None or delivery.endpoint_id != endpoint_id:
            raise NotFound("The delivery was not found")
        before = {"status": delivery.status}
        delivery.status = PENDING
        delivery.retries_used = len(schedule)  # a manual retry is one attempt, not a new schedule
        delivery.next_attempt_at = now
        delivery.queued_at = now
        delivery.lease_until = None
        delivery.delivered_at = None
        uow.audit(
            actor,
            AuditAction.WEBHOOK_DELIVERY_RETRIED,
            AuditResource.WEBHOOK,
            endpoint_id,
            {"deliveryId": {"old": None, "new": str(delivery.id)}, **diff(before, {"status": PENDING})},
        )
        message = uow.webhooks.get_message(delivery.message_id)
        assert message is not None
        uow.commit()
    _queue([delivery.id])
    return DeliveryView(delivery, message)


def _queue(delivery_ids: Sequence[uuid.UUID], request_id: str | None = None) -> None:
    """Publish the deliveries' tasks; a refused publish is left to the beat job (they are due)."""
    for delivery_id in delivery_ids:
        try:
            send_task(DELIVER_WEBHOOK, [str(delivery_id)], request_id=request_id)
        except BrokerUnavailable as exc:
            log.warning("webhook_queue_failed", delivery_id=str(delivery_id), error=str(exc))
            return


# ---- fan-out: the event handler ------------------------------------------------------------------


@in_transaction
def fan_out(event: Event, context: EventContext, uow: UnitOfWork) -> AfterCommit | None:
    """Handler: one message and one delivery per enabled endpoint subscribed to the event's type."""
    webhook_type = WEBHOOK_EVENTS.get(type(event))
    if webhook_type is None:
        return None
    endpoint_ids = [e.id for e in uow.webhooks.enabled() if subscribes(e.event_types, webhook_type.name)]
    if not endpoint_ids:
        return None
    now = utcnow()
    message_id = uow.webhooks.message_for_outbox(
        {
            "id": uuid.uuid4(),
            "outbox_id": context.event_id,
            "event_type": webhook_type.name,
            "data_kind": webhook_type.data,
            "resource_id": str(getattr(event, webhook_type.id_field, "") or "") or None,
            "data": json.dumps(event_data(event)) if webhook_type.data == EVENT else None,
            "occurred_at": now,
        }
    )
    created_ids = uow.webhooks.add_deliveries(message_id, endpoint_ids, now)
    return partial(_queue, created_ids, context.request_id)


# ---- delivery: the worker ---------------------------------------------------------------------------


@dataclass
class DeliveryOutcome:
    status: str  # PENDING, SUCCEEDED, FAILED, or "SKIPPED" when there was nothing to do
    retry_in: float | None = None  # seconds until the task should run again (None: not by itself)
    status_code: int | None = None
    error: str | None = None


def deliver(
    delivery_id: uuid.UUID,
    *,
    settings: DeliverySettings,
    render: Renderer,
    send: HttpSender,
    now: Callable[[], datetime] = utcnow,
) -> DeliveryOutcome:
    """Make one attempt of a delivery that is due (idempotent: a duplicate task finds nothing to do).

    The common path is three statements, each its own transaction: the claim (one UPDATE …
    RETURNING that reads the endpoint and the message too), the count of the endpoint's leases,
    and, after a 2xx, the outcome.
    """
    claimed = _claim(delivery_id, settings, now())
    if isinstance(claimed, DeliveryOutcome):
        return claimed
    body = _body(claimed, render)
    policy = UrlPolicy(settings.allow_private_urls, settings.require_https)
    try:
        target = policy.check(claimed.url)  # again at every delivery: the name may resolve elsewhere now
    except UnsafeUrl as exc:
        result = HttpResult(None, f"refused: {exc}", "", 0.0)
    else:
        sent_at = now()
        timestamp = int(sent_at.timestamp())
        headers = {
            "webhook-id": claimed.webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(
                claimed.webhook_id, timestamp, body, claimed.signing_secrets(sent_at)
            ),
            "Content-Type": "application/json",
        }
        result = send(target, headers, body.encode(), settings.timeout)
    return _record(claimed, result, settings, now())


def _claim(
    delivery_id: uuid.UUID, settings: DeliverySettings, now: datetime
) -> ClaimedDelivery | DeliveryOutcome:
    """Lease the delivery if it may go now: due, not being sent, the endpoint under its bound.

    The bound without a lock: the claim (one statement) counts the leases committed before it,
    commits, then counts again and steps back if that is over the bound. Of claims that raced, the
    last to commit sees all the others (they committed before it, and a claim keeps its lease until
    its outcome is recorded), so it steps back whenever they would be more than the bound: never
    more than the bound are sent at once (racers may all step back; they retry shortly).
    """
    lease = timedelta(seconds=settings.timeout + LEASE_MARGIN_SECONDS)
    lease_until, due_by, horizon = now + lease, now + timedelta(seconds=1), now + lease
    bound = settings.endpoint_concurrency
    with StatementUnitOfWork() as uow:
        claimed = uow.webhooks.claim(
            delivery_id, now=now, due_by=due_by, lease_until=lease_until, horizon=horizon, bound=bound
        )
        if claimed is not None:
            if uow.webhooks.in_flight(claimed.endpoint_id, now, horizon) <= bound:
                return claimed
            uow.webhooks.release(claimed.delivery_id, lease_until)
            return DeliveryOutcome("SKIPPED", retry_in=BUSY_RETRY_SECONDS)
    return _refusal(delivery_id, now, due_by)


def _refusal(delivery_id: uuid.UUID, now: datetime, due_by: datetime) -> DeliveryOutcome:
    """Why the claim took nothing (the uncommon path)."""
    with UnitOfWork() as uow:
        delivery = uow.webhooks.lock_delivery(delivery_id, skip_locked=True)
        if delivery is None or delivery.status != PENDING:
            return DeliveryOutcome("SKIPPED")
        if delivery.lease_until is not None and delivery.lease_until > now:
            return DeliveryOutcome("SKIPPED")  # another worker is sending it
        if delivery.next_attempt_at is not None and delivery.next_attempt_at > due_by:
            return DeliveryOutcome("SKIPPED")  # not due: a stale duplicate of its task
        endpoint = uow.webhooks.get(delivery.endpoint_id)
        message = uow.webhooks.get_message(delivery.message_id)
        assert endpoint is not None and message is not None
        if not endpoint.enabled and message.event_type != TEST_EVENT:
            delivery.status = FAILED
            delivery.last_error = SEND_DISABLED
            delivery.next_attempt_at = None
            uow.commit()
            return DeliveryOutcome(FAILED, error=SEND_DISABLED)
    return DeliveryOutcome("SKIPPED", retry_in=BUSY_RETRY_SECONDS)  # the endpoint's bound is reached


def _body(claimed: ClaimedDelivery, render: Renderer) -> str:
    """The body to send: stored once rendered; an EVENT message's is a function of its stored data."""
    if claimed.body is not None:
        return claimed.body
    if claimed.data_kind == EVENT:
        return message_body(claimed.event_type, claimed.occurred_at, claimed.data)
    # The first attempt of a resource event renders it (the API's schema) and stores it before
    # sending, so that every retry, and every other endpoint, sends these same bytes.
    body = message_body(
        claimed.event_type, claimed.occurred_at, render(claimed.data_kind, claimed.resource_id or "")
    )
    with StatementUnitOfWork() as uow:
        return uow.webhooks.set_body_if_absent(claimed.message_id, body)


def _record(
    claimed: ClaimedDelivery, result: HttpResult, settings: DeliverySettings, now: datetime
) -> DeliveryOutcome:
    if is_success(result.status_code):
        assert result.status_code is not None
        with StatementUnitOfWork() as uow:
            found = uow.webhooks.record_success(claimed.delivery_id, result.status_code, now)
        outcome = (
            DeliveryOutcome(SUCCEEDED, status_code=result.status_code)
            if found
            else DeliveryOutcome("SKIPPED")
        )
    else:
        outcome = _record_failure(claimed, result, settings, now)
    log.info(
        "webhook_attempt",
        delivery_id=str(claimed.delivery_id),
        attempt=claimed.attempt,
        status=outcome.status,
        status_code=result.status_code,
        seconds=round(result.seconds, 3),
    )
    return outcome


def _record_failure(
    claimed: ClaimedDelivery, result: HttpResult, settings: DeliverySettings, now: datetime
) -> DeliveryOutcome:
    """A retry on the schedule, or FAILED; 410 or too many failures in a row disable the endpoint."""
    error = result.error or f"HTTP {result.status_code}: {result.body}"
    with UnitOfWork() as uow:
        delivery = uow.webhooks.lock_delivery(claimed.delivery_id)
        if delivery is None:
            return DeliveryOutcome("SKIPPED")  # the endpoint was deleted meanwhile
        endpoint = uow.webhooks.lock(claimed.endpoint_id)
        assert endpoint is not None
        delivery.lease_until = None
        delivery.last_status_code = result.status_code
        delivery.last_error = error[:1024]
        outcome = DeliveryOutcome(PENDING, status_code=result.status_code, error=delivery.last_error)
        if result.status_code == GONE:
            _fail(delivery)
            _disable(uow, endpoint, "The endpoint answered 410 Gone", now)
            outcome.status = FAILED
        else:
            delay = next_retry_delay(settings.retry_schedule, delivery.retries_used)
            if delay is not None and claimed.event_type != TEST_EVENT:
                delivery.retries_used += 1
                delivery.next_attempt_at = now + timedelta(seconds=delay)
                # The task retries itself within the broker's countdown limit; beyond, beat queues it.
                delivery.queued_at = delivery.next_attempt_at if delay <= MAX_COUNTDOWN_SECONDS else None
                outcome.retry_in = float(delay) if delay <= MAX_COUNTDOWN_SECONDS else None
            else:
                _fail(delivery)
                outcome.status = FAILED
                if claimed.event_type != TEST_EVENT:
                    endpoint.consecutive_failures += 1
                    if endpoint.consecutive_failures >= settings.disable_after_failures:
                        reason = f"{endpoint.consecutive_failures} deliveries in a row failed"
                        _disable(uow, endpoint, reason, now)
        uow.commit()
    return outcome


def _fail(delivery: WebhookDelivery) -> None:
    delivery.status = FAILED
    delivery.next_attempt_at = None


def _disable(uow: UnitOfWork, endpoint: WebhookEndpoint, reason: str, now: datetime) -> None:
    event = endpoint.disable(reason, now)
    if event is not None:
        uow.record(event)
        log.warning("webhook_endpoint_disabled", webhook_id=str(endpoint.id), reason=reason)


def queue_due_deliveries(now: datetime | None = None, limit: int = SWEEP_BATCH) -> int:
    """Beat: queue the deliveries that are due and not queued lately; returns how many."""
    now = now or utcnow()
    with UnitOfWork() as uow:
        due = uow.webhooks.lock_due(now, now - REQUEUE_AFTER, limit)
        ids = [d.id for d in due]
        for delivery in due:
            delivery.queued_at = now
        uow.commit()
    _queue(ids)
    return len(ids)


# ---- the admins hear of a disabled endpoint --------------------------------------------------------


def on_endpoint_disabled(event: Event, context: EventContext) -> None:
    """Handler: queue the e-mail to the admins (a task of its own, retried)."""
    assert isinstance(event, WebhookEndpointDisabled)
    send_task(EMAIL_ADMINS_WEBHOOK_DISABLED, [event.webhook_id, event.url, event.reason, context.event_id])


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def email_admins_endpoint_disabled(
    webhook_id: str, url: str, reason: str, event_id: int, mailer: Mailer
) -> int:
    """One e-mail per live admin account; ``MailerError`` propagates (the task retries)."""
    with ReadOnlyUnitOfWork() as uow:
        recipients = uow.webhooks.admin_emails()
    text = (
        f"The webhook endpoint {webhook_id} ({url}) was disabled: {reason}.\n"
        "Fix the receiver, then enable it again with PATCH /admin/webhooks/"
        f'{webhook_id} {{"enabled": true}}; its failed deliveries can be retried one by one.\n'
    )
    for recipient in recipients:
        mailer.send(
            OutgoingEmail(
                message_id=f"webhook-disabled-{event_id}-{_digest(recipient)}",
                recipient=recipient,
                subject="A webhook endpoint was disabled",
                text=text,
                html=f"<p>{html.escape(text)}</p>",
            )
        )
    return len(recipients)
