"""Domain events: facts in the past tense, recorded by entities and published through the outbox."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class Event:
    """Base class; subclasses are registered by name so the outbox can rebuild them."""

    registry: ClassVar[dict[str, type[Event]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Event.registry[cls.__name__] = cls

    @property
    def name(self) -> str:
        return type(self).__name__

    def to_payload(self) -> dict[str, Any]:
        return {
            k: (str(v) if v is not None and not isinstance(v, (int, bool)) else v)
            for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_payload(cls, name: str, payload: dict[str, Any]) -> Event:
        event_cls = cls.registry[name]
        known = {f.name for f in dataclasses.fields(event_cls)}
        return event_cls(**{k: v for k, v in payload.items() if k in known})


@dataclass(frozen=True)
class OrderPlaced(Event):
    order_id: str
    user_id: str
    payment_id: str


@dataclass(frozen=True)
class PaymentCompleted(Event):
    order_id: str
    user_id: str
    payment_id: str


@dataclass(frozen=True)
class PaymentFailed(Event):
    order_id: str
    user_id: str
    payment_id: str
    reason: str | None = None
    # Set when the order waits for another attempt (the retry window) instead of being cancelled.
    payment_due_by: str | None = None


@dataclass(frozen=True)
class PaymentActionRequired(Event):
    """The card needs the customer's authentication (3-D Secure): the customer is told."""

    order_id: str
    user_id: str
    payment_id: str


@dataclass(frozen=True)
class PaymentProcessing(Event):
    """The gateway is settling the charge (no e-mail: the outcome follows)."""

    order_id: str
    user_id: str
    payment_id: str


@dataclass(frozen=True)
class PaymentRetried(Event):
    """The customer started a new payment attempt (another card) within the retry window."""

    order_id: str
    user_id: str
    payment_id: str
    # The earlier attempt's intent still waiting for an authentication: cancelled first.
    abandoned_intent: str | None = None


@dataclass(frozen=True)
class OrderShipped(Event):
    order_id: str
    user_id: str


@dataclass(frozen=True)
class OrderDelivered(Event):
    order_id: str
    user_id: str


@dataclass(frozen=True)
class OrderCancelled(Event):
    order_id: str
    user_id: str
    reason: str | None = None


@dataclass(frozen=True)
class PaymentRefunded(Event):
    order_id: str
    user_id: str
    payment_id: str


@dataclass(frozen=True)
class RefundRequested(Event):
    """Internal: money taken must be given back through the gateway (queued by the worker).
    ``refund_id`` names the refund to send; without it, everything still refundable is refunded
    (a cancelled paid order, a voided payment charged after all)."""

    order_id: str
    user_id: str
    payment_id: str
    refund_id: str | None = None


@dataclass(frozen=True)
class RefundSucceeded(Event):
    """The gateway says a refund succeeded (the returns feature marks its return REFUNDED)."""

    order_id: str
    user_id: str
    payment_id: str
    refund_id: str
    amount: str


@dataclass(frozen=True)
class RefundFailed(Event):
    """The gateway failed a refund (possibly after it had succeeded): the admins are e-mailed."""

    order_id: str
    user_id: str
    payment_id: str
    refund_id: str
    amount: str
    reason: str | None = None


@dataclass(frozen=True)
class PaymentPartiallyRefunded(Event):
    """A refund succeeded and part of the payment is still kept (the customer is told)."""

    order_id: str
    user_id: str
    payment_id: str
    amount: str


@dataclass(frozen=True)
class AdminAlerted(Event):
    """One admin is e-mailed about something that needs a person (``alert``: the event that
    raised it, e.g. RefundFailed); one per admin, recorded by the handler of ``source_event_id``."""

    user_id: str
    order_id: str
    payment_id: str
    alert: str
    detail: str
    source_event_id: int


@dataclass(frozen=True)
class PaymentDisputed(Event):
    """The cardholder disputed the charge (``payment.disputed``); the admins are e-mailed."""

    order_id: str
    user_id: str
    payment_id: str
    status: str
    reason: str
    amount: str


@dataclass(frozen=True)
class PaymentDisputeClosed(Event):
    """The card network decided the dispute (WON or LOST); the admins are e-mailed."""

    order_id: str
    user_id: str
    payment_id: str
    status: str
    reason: str
    amount: str


@dataclass(frozen=True)
class PasswordResetRequested(Event):
    """A password-reset token was issued: its e-mail carries the secret (derived at delivery)."""

    user_id: str
    token_id: str
    ttl_seconds: int = 3600


@dataclass(frozen=True)
class EmailVerificationRequested(Event):
    """A new account's verification token was issued: its e-mail carries the secret."""

    user_id: str
    token_id: str
    ttl_seconds: int = 7 * 24 * 3600
