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
    """Internal: a COMPLETED payment must be refunded through the gateway (queued by the worker)."""

    order_id: str
    user_id: str
    payment_id: str


@dataclass(frozen=True)
class WebhookEndpointDisabled(Event):
    """Internal: an endpoint answered 410 or failed too often; the admins are e-mailed."""

    webhook_id: str
    url: str
    reason: str
