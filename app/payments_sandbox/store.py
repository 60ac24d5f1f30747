"""The sandbox's in-memory gateway: payment intents, charges, refunds and test payment methods.

Plain Python, no HTTP: ``server.py`` maps requests onto these methods. Every public method runs
under one lock, so concurrent requests see a consistent store.
"""

from __future__ import annotations

import re
import secrets
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

_ALPHABET = string.ascii_letters + string.digits
T = TypeVar("T")
API_VERSION = "2025-01-27.acacia"
# The event each PaymentIntent status announces (Stripe's names).
INTENT_EVENTS = {
    "succeeded": "payment_intent.succeeded",
    "requires_action": "payment_intent.requires_action",
    "processing": "payment_intent.processing",
    "canceled": "payment_intent.canceled",
    # requires_payment_method after a confirmation: the attempt failed.
    "requires_payment_method": "payment_intent.payment_failed",
}

# Stripe's test payment methods (https://docs.stripe.com/testing): the ones that succeed …
SUCCEEDING_METHODS = {
    "pm_card_visa": "visa",
    "pm_card_visa_debit": "visa",
    "pm_card_mastercard": "mastercard",
    "pm_card_mastercard_debit": "mastercard",
    "pm_card_amex": "amex",
    "pm_card_discover": "discover",
}


@dataclass(frozen=True)
class Decline:
    code: str
    decline_code: str
    message: str


# … and the ones that are declined (HTTP 402, ``card_error``).
DECLINING_METHODS = {
    "pm_card_chargeDeclined": Decline("card_declined", "generic_decline", "Your card was declined."),
    "pm_card_chargeDeclinedInsufficientFunds": Decline(
        "card_declined", "insufficient_funds", "Your card has insufficient funds."
    ),
    "pm_card_chargeDeclinedLostCard": Decline("card_declined", "lost_card", "Your card was declined."),
    "pm_card_chargeDeclinedStolenCard": Decline("card_declined", "stolen_card", "Your card was declined."),
    "pm_card_chargeDeclinedExpiredCard": Decline("expired_card", "expired_card", "Your card has expired."),
    "pm_card_chargeDeclinedIncorrectCvc": Decline(
        "incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect."
    ),
    "pm_card_chargeDeclinedProcessingError": Decline(
        "processing_error",
        "processing_error",
        "An error occurred while processing your card. Try again in a little bit.",
    ),
}

# … and the ones whose outcome comes later: customer authentication (3-D Secure) and a payment
# that stays ``processing``. ``/_sandbox/payment_intents/{id}/authenticate`` and ``…/settle`` end them.
AUTHENTICATING_METHODS = {"pm_card_threeDSecure2Required": "visa", "pm_card_authenticationRequired": "visa"}
PROCESSING_METHODS = {"pm_card_processing": "visa"}
KNOWN_METHODS = {*SUCCEEDING_METHODS, *DECLINING_METHODS, *AUTHENTICATING_METHODS, *PROCESSING_METHODS}
AUTHENTICATION_FAILURE = {
    "type": "card_error",
    "code": "payment_intent_authentication_failure",
    "message": "The provided PaymentMethod has failed authentication. You can provide payment_method_data "
    "or a new PaymentMethod to attempt to fulfill this PaymentIntent again.",
}
PROCESSING_FAILURE = {
    "type": "card_error",
    "code": "card_declined",
    "decline_code": "generic_decline",
    "message": "Your card was declined.",
}
# Stripe lets a PaymentIntent be canceled in these states ("in rare cases" processing too).
CANCELABLE = {"requires_payment_method", "requires_confirmation", "requires_action", "processing"}
CONFIRMABLE = {"requires_payment_method", "requires_confirmation"}
CANCELLATION_REASONS = {"duplicate", "fraudulent", "requested_by_customer", "abandoned"}
DISPUTE_REASONS = {"fraudulent", "product_not_received", "duplicate", "general", "unrecognized"}

MAX_AMOUNT = 99_999_999  # Stripe's ceiling for most currencies ($999,999.99)
PAYMENT_INTENT_PARAMS = {
    "amount",
    "currency",
    "payment_method",
    "confirm",
    "metadata",
    "description",
    "automatic_payment_methods",
    "payment_method_types",
    "return_url",
    "receipt_email",
    "statement_descriptor_suffix",
    "capture_method",
    "off_session",
    "expand",
}
REFUND_PARAMS = {"payment_intent", "charge", "amount", "reason", "metadata", "expand"}
CONFIRM_PARAMS = {"payment_method", "return_url", "off_session", "expand", "automatic_payment_methods"}
REFUND_REASONS = {"duplicate", "fraudulent", "requested_by_customer"}


def new_id(prefix: str) -> str:
    return prefix + "_" + "".join(secrets.choice(_ALPHABET) for _ in range(24))


class StripeError(Exception):
    """An error the API answers with Stripe's body: ``{"error": {type, code, message, …}}``."""

    def __init__(self, status: int, type_: str, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"type": type_, "message": message}
        self.body.update({k: v for k, v in fields.items() if v is not None})

    def to_json(self) -> dict[str, Any]:
        return {"error": self.body}


def invalid_request(
    message: str, *, param: str | None = None, code: str | None = None, status: int = 400
) -> StripeError:
    return StripeError(status, "invalid_request_error", message, param=param, code=code)


@dataclass
class Charge:
    id: str
    payment_intent: str
    amount: int
    currency: str
    status: str  # succeeded | failed
    payment_method: str
    created: int
    amount_refunded: int = 0
    failure_code: str | None = None


@dataclass
class PaymentIntent:
    id: str
    amount: int
    currency: str
    status: str
    payment_method: str | None
    metadata: dict[str, str]
    description: str | None
    created: int
    payment_method_types: list[str]
    automatic_payment_methods: dict[str, Any] | None
    latest_charge: str | None = None
    last_payment_error: dict[str, Any] | None = None
    sequence: int = 0
    canceled_at: int | None = None
    cancellation_reason: str | None = None
    return_url: str | None = None


@dataclass
class Refund:
    id: str
    amount: int
    charge: str
    payment_intent: str
    currency: str
    reason: str | None
    metadata: dict[str, str]
    created: int
    status: str = "succeeded"  # pending | succeeded | failed
    failure_reason: str | None = None


@dataclass
class Dispute:
    id: str
    amount: int
    charge: str
    payment_intent: str
    currency: str
    reason: str
    status: str  # needs_response | won | lost
    created: int


@dataclass
class Faults:
    fail_next: int = 0
    status: int = 503
    delay_ms: int = 0
    delay_confirm_ms: int = 0  # answers of ``…/confirm`` only: a slow gateway mid-charge
    # Answers of ``POST /v1/refunds`` only: the refund is made at once, its answer comes this much
    # later (a slow gateway mid-refund; a client that gives up, or dies, never hears of it).
    delay_refund_ms: int = 0
    served: int = 0
    drop_webhooks: int = 0


@dataclass
class Store:
    """Everything the sandbox remembers, for its lifetime."""

    lock: threading.RLock = field(default_factory=threading.RLock)
    intents: dict[str, PaymentIntent] = field(default_factory=dict)
    charges: dict[str, Charge] = field(default_factory=dict)
    refunds: dict[str, Refund] = field(default_factory=dict)
    disputes: dict[str, Dispute] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    api_requests: int = 0
    # Every event, oldest first (``GET /_sandbox/events``); ``on_event`` sends each (webhooks.py).
    events: list[dict[str, Any]] = field(default_factory=list)
    on_event: Callable[[dict[str, Any]], None] | None = None
    _sequence: int = 0

    # ---- events ------------------------------------------------------------------------------

    def emit(self, type_: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Record a state change as a Stripe event and hand it to the sender (outside no lock:
        the sender only queues it)."""
        event = {
            "id": new_id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": int(time.time()),
            "data": {"object": obj},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": type_,
        }
        with self.lock:
            self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)
        return event

    def _emit_intent(self, intent: PaymentIntent) -> None:
        type_ = INTENT_EVENTS.get(intent.status)
        if type_ is not None:
            self.emit(type_, self.payment_intent_json(intent))

    # ---- payment intents ---------------------------------------------------------------------

    def create_payment_intent(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """``POST /v1/payment_intents``: (status, body); a decline is a 402 after the intent exists."""
        _reject_unknown(params, PAYMENT_INTENT_PARAMS)
        amount = _amount(params.get("amount"), required=True)
        currency = _currency(params.get("currency"))
        confirm = _boolean(params.get("confirm", "false"), "confirm")
        metadata = _metadata(params.get("metadata"))
        method = params.get("payment_method")
        if method is not None and not isinstance(method, str):
            raise invalid_request("Invalid string: payment_method", param="payment_method")
        capture = params.get("capture_method", "automatic")
        if capture != "automatic":
            raise invalid_request(
                "The sandbox supports capture_method=automatic only.", param="capture_method"
            )
        types = params.get("payment_method_types")
        apm = params.get("automatic_payment_methods")
        if types is not None and not (isinstance(types, list) and all(t == "card" for t in types)):
            raise invalid_request(
                "The sandbox supports payment_method_types=[card] only.", param="payment_method_types"
            )
        if apm is not None:
            if not isinstance(apm, dict):
                raise invalid_request("Invalid object", param="automatic_payment_methods")
            apm = {
                "enabled": _boolean(apm.get("enabled", "false"), "automatic_payment_methods[enabled]"),
                "allow_redirects": apm.get("allow_redirects", "always"),
            }
        elif types is None:
            apm = {"enabled": True, "allow_redirects": "always"}
        if method is not None and method not in KNOWN_METHODS:
            raise invalid_request(
                f"No such PaymentMethod: '{method}'", param="payment_method", code="resource_missing"
            )
        if confirm:
            if method is None:
                raise invalid_request(
                    "You cannot confirm this PaymentIntent because it's missing a payment method.",
                    param="payment_method",
                    code="payment_intent_unexpected_state",
                )
            # Stripe's default (automatic payment methods) may redirect: without a return_url it
            # wants redirects ruled out, exactly like the live API.
            if (
                types is None
                and apm is not None
                and apm.get("allow_redirects") != "never"
                and not params.get("return_url")
            ):
                raise invalid_request(
                    "This PaymentIntent is configured to accept payment methods enabled in your "
                    "Dashboard. Because some of these payment methods might redirect your customer "
                    "off of your page, you must provide a `return_url`. If you don't want to accept "
                    "redirect-based payment methods, set `automatic_payment_methods[enabled]` to "
                    "`true` and `automatic_payment_methods[allow_redirects]` to `never`.",
                    param="return_url",
                )
        with self.lock:
            self._sequence += 1
            intent = PaymentIntent(
                id=new_id("pi"),
                amount=amount,
                currency=currency,
                status="requires_confirmation" if method else "requires_payment_method",
                payment_method=method,
                metadata=metadata,
                description=params.get("description"),
                created=int(time.time()),
                payment_method_types=["card"],
                automatic_payment_methods=apm if types is None else None,
                sequence=self._sequence,
            )
            intent.return_url = params.get("return_url")
            self.intents[intent.id] = intent
            created = self.payment_intent_json(intent)
            if confirm:
                assert method is not None
                status, body = self._confirm(intent, method)
        self.emit("payment_intent.created", created)
        if not confirm:
            return 200, created
        self._after_confirm(intent)
        return status, body

    def confirm_payment_intent(self, intent_id: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """``POST /v1/payment_intents/{id}/confirm``: charge (or start) the intent, once."""
        _reject_unknown(params, CONFIRM_PARAMS)
        with self.lock:
            intent = self._intent(intent_id)
            method = params.get("payment_method") or intent.payment_method
            if method is not None and method not in KNOWN_METHODS:
                raise invalid_request(
                    f"No such PaymentMethod: '{method}'", param="payment_method", code="resource_missing"
                )
            if intent.status not in CONFIRMABLE:
                raise _unexpected_state(intent, "confirm")
            if method is None:
                raise invalid_request(
                    "You cannot confirm this PaymentIntent because it's missing a payment method.",
                    param="payment_method",
                    code="payment_intent_unexpected_state",
                )
            if params.get("return_url"):
                intent.return_url = params["return_url"]
            status, body = self._confirm(intent, method)
        self._after_confirm(intent)
        return status, body

    def _confirm(self, intent: PaymentIntent, method: str) -> tuple[int, dict[str, Any]]:
        """Run the test method's outcome; called under the lock."""
        intent.payment_method = method
        intent.last_payment_error = None
        if method in AUTHENTICATING_METHODS:
            intent.status = "requires_action"
            return 200, self.payment_intent_json(intent)
        if method in PROCESSING_METHODS:
            intent.status = "processing"
            return 200, self.payment_intent_json(intent)
        decline = DECLINING_METHODS.get(method)
        charge = self._charge(intent, failure_code=decline.code if decline else None)
        if decline is None:
            intent.status = "succeeded"
            return 200, self.payment_intent_json(intent)
        error = {
            "type": "card_error",
            "code": decline.code,
            "decline_code": decline.decline_code,
            "message": decline.message,
            "charge": charge.id,
            "doc_url": f"https://stripe.com/docs/error-codes/{decline.code.replace('_', '-')}",
            "payment_method": {"id": method, "object": "payment_method", "type": "card"},
        }
        intent.status = "requires_payment_method"
        intent.last_payment_error = dict(error)
        return 402, {"error": {**error, "payment_intent": self.payment_intent_json(intent)}}

    def _after_confirm(self, intent: PaymentIntent) -> None:
        with self.lock:
            charge = self.charges.get(intent.latest_charge or "")
            charge_json = self.charge_json(charge) if charge is not None else None
        if charge_json is not None and intent.status in ("succeeded", "requires_payment_method"):
            self.emit(
                "charge.succeeded" if charge_json["status"] == "succeeded" else "charge.failed", charge_json
            )
        self._emit_intent(intent)

    def _charge(self, intent: PaymentIntent, failure_code: str | None = None) -> Charge:
        charge = Charge(
            id=new_id("ch"),
            payment_intent=intent.id,
            amount=intent.amount,
            currency=intent.currency,
            status="failed" if failure_code else "succeeded",
            payment_method=intent.payment_method or "",
            created=int(time.time()),
            failure_code=failure_code,
        )
        self.charges[charge.id] = charge
        intent.latest_charge = charge.id
        return charge

    def cancel_payment_intent(self, intent_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/payment_intents/{id}/cancel``: a later confirm is refused; a succeeded intent
        cannot be canceled (it is refunded instead)."""
        _reject_unknown(params, {"cancellation_reason", "expand"})
        reason = params.get("cancellation_reason")
        if reason is not None and reason not in CANCELLATION_REASONS:
            raise invalid_request(
                f"Invalid cancellation_reason: must be one of {', '.join(sorted(CANCELLATION_REASONS))}",
                param="cancellation_reason",
            )
        with self.lock:
            intent = self._intent(intent_id)
            if intent.status not in CANCELABLE:
                raise invalid_request(
                    "You cannot cancel this PaymentIntent because it has a status of "
                    f"{intent.status}. Only a PaymentIntent with one of the following statuses may be "
                    "canceled: requires_payment_method, requires_capture, requires_confirmation, "
                    "requires_action, processing.",
                    code="payment_intent_unexpected_state",
                )
            intent.status = "canceled"
            intent.canceled_at = int(time.time())
            intent.cancellation_reason = reason
            body = self.payment_intent_json(intent)
        self._emit_intent(intent)
        return body

    def authenticate(self, intent_id: str, outcome: str) -> dict[str, Any]:
        """Test support: the customer completes (or fails) 3-D Secure for a ``requires_action`` intent."""
        return self._finish(intent_id, "requires_action", "authenticate", outcome, AUTHENTICATION_FAILURE)

    def settle(self, intent_id: str, outcome: str) -> dict[str, Any]:
        """Test support: a ``processing`` payment finally succeeds or fails (a failed charge)."""
        return self._finish(intent_id, "processing", "settle", outcome, PROCESSING_FAILURE, charged=True)

    def _finish(
        self,
        intent_id: str,
        waiting_in: str,
        action: str,
        outcome: str,
        failure: dict[str, Any],
        charged: bool = False,
    ) -> dict[str, Any]:
        """End an intent waiting in ``waiting_in``: charged, or back to requires_payment_method with
        ``failure`` (after a failed charge when ``charged``)."""
        with self.lock:
            intent = self._intent(intent_id)
            if intent.status != waiting_in:
                raise _unexpected_state(intent, action)
            if outcome == "succeed":
                self._charge(intent)
                intent.status = "succeeded"
            else:
                if charged:
                    self._charge(intent, failure_code=failure["code"])
                intent.status = "requires_payment_method"
                intent.last_payment_error = (
                    {**failure, "charge": intent.latest_charge} if charged else dict(failure)
                )
            body = self.payment_intent_json(intent)
        self._after_confirm(intent)
        return body

    def _intent(self, intent_id: str) -> PaymentIntent:
        return _found(self.intents, intent_id, "payment_intent", "intent")

    def get_payment_intent(self, intent_id: str) -> dict[str, Any]:
        with self.lock:
            return self.payment_intent_json(self._intent(intent_id))

    def search_payment_intents(self, params: dict[str, Any]) -> dict[str, Any]:
        """``GET /v1/payment_intents/search``: Stripe's search query language, the part that looks
        payments up: ``metadata['key']:'value'`` and ``status:'value'`` clauses joined by AND."""
        _reject_unknown(params, {"query", "limit", "page", "expand"})
        query = params.get("query")
        if not isinstance(query, str) or not query.strip():
            raise invalid_request("Missing required param: query.", param="query", code="parameter_missing")
        limit = _integer(params.get("limit", "10"), "limit")
        if not 1 <= limit <= 100:
            raise invalid_request("This value must be between 1 and 100.", param="limit")
        clauses = _search_clauses(query)
        with self.lock:
            found = [
                i
                for i in sorted(self.intents.values(), key=lambda i: i.sequence, reverse=True)
                if all(_clause_matches(i, field, value) for field, value in clauses)
            ]
            return {
                "object": "search_result",
                "url": "/v1/payment_intents/search",
                "has_more": len(found) > limit,
                "next_page": None,
                "data": [self.payment_intent_json(i) for i in found[:limit]],
            }

    def list_payment_intents(self, params: dict[str, Any]) -> dict[str, Any]:
        """Newest first, with ``limit`` (1 to 100), ``starting_after`` and ``created[gte|gt|lte|lt]``."""
        _reject_unknown(params, {"limit", "starting_after", "created", "expand"})
        limit = _integer(params.get("limit", "10"), "limit")
        if not 1 <= limit <= 100:
            raise invalid_request("This value must be between 1 and 100.", param="limit")
        created = params.get("created")
        with self.lock:
            intents = sorted(self.intents.values(), key=lambda i: i.sequence, reverse=True)
            if isinstance(created, dict):
                intents = [i for i in intents if _created_matches(i.created, created)]
            elif created is not None:
                exact = _integer(created, "created")
                intents = [i for i in intents if i.created == exact]
            if params.get("starting_after") is not None:
                intents = _after(intents, params["starting_after"], "starting_after")
            return {
                "object": "list",
                "url": "/v1/payment_intents",
                "has_more": len(intents) > limit,
                "data": [self.payment_intent_json(i) for i in intents[:limit]],
            }

    def payment_intent_json(self, intent: PaymentIntent) -> dict[str, Any]:
        charge = self.charges.get(intent.latest_charge or "")
        received = charge.amount if charge is not None and charge.status == "succeeded" else 0
        return {
            "id": intent.id,
            "object": "payment_intent",
            "amount": intent.amount,
            "amount_capturable": 0,
            "amount_received": received,
            "automatic_payment_methods": intent.automatic_payment_methods,
            "canceled_at": intent.canceled_at,
            "cancellation_reason": intent.cancellation_reason,
            "capture_method": "automatic",
            "client_secret": f"{intent.id}_secret_{intent.id[3:13]}",
            "confirmation_method": "automatic",
            "created": intent.created,
            "currency": intent.currency,
            "customer": None,
            "description": intent.description,
            "last_payment_error": intent.last_payment_error,
            "latest_charge": intent.latest_charge,
            "livemode": False,
            "metadata": dict(intent.metadata),
            "next_action": _next_action(intent),
            "payment_method": intent.payment_method,
            "payment_method_types": list(intent.payment_method_types),
            "status": intent.status,
        }

    def charge_json(self, charge: Charge) -> dict[str, Any]:
        refunds = [r for r in self.refunds.values() if r.charge == charge.id]
        return {
            "id": charge.id,
            "object": "charge",
            "amount": charge.amount,
            "amount_captured": charge.amount if charge.status == "succeeded" else 0,
            "amount_refunded": charge.amount_refunded,
            "captured": charge.status == "succeeded",
            "created": charge.created,
            "currency": charge.currency,
            "disputed": any(d.charge == charge.id for d in self.disputes.values()),
            "failure_code": charge.failure_code,
            "livemode": False,
            "paid": charge.status == "succeeded",
            "payment_intent": charge.payment_intent,
            "payment_method": charge.payment_method,
            "refunded": charge.amount_refunded >= charge.amount > 0,
            "refunds": {
                "object": "list",
                "data": [self.refund_json(r) for r in refunds],
                "has_more": False,
                "url": f"/v1/charges/{charge.id}/refunds",
            },
            "status": charge.status,
        }

    # ---- refunds -----------------------------------------------------------------------------

    def create_refund(self, params: dict[str, Any]) -> dict[str, Any]:
        _reject_unknown(params, REFUND_PARAMS)
        reason = params.get("reason")
        if reason is not None and reason not in REFUND_REASONS:
            raise invalid_request(
                f"Invalid reason: must be one of {', '.join(sorted(REFUND_REASONS))}", param="reason"
            )
        metadata = _metadata(params.get("metadata"))
        with self.lock:
            charge = self._refundable_charge(params)
            remaining = charge.amount - charge.amount_refunded
            if remaining <= 0:
                raise invalid_request(
                    f"Charge {charge.id} has already been refunded.", code="charge_already_refunded"
                )
            amount = remaining if params.get("amount") is None else _amount(params["amount"])
            if amount > remaining:
                raise invalid_request(
                    f"Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})",
                    param="amount",
                    code="amount_too_large",
                )
            # A pending refund already holds its amount (no second refund can take it), as Stripe's do.
            charge.amount_refunded += amount
            refund = Refund(
                id=new_id("re"),
                amount=amount,
                charge=charge.id,
                payment_intent=charge.payment_intent,
                currency=charge.currency,
                reason=reason,
                metadata=metadata,
                created=int(time.time()),
                status="pending" if metadata.get("sandbox_pending") == "true" else "succeeded",
            )
            self.refunds[refund.id] = refund
            body = self.refund_json(refund)
            charge_json = self.charge_json(charge)
        self.emit("refund.created", body)
        if refund.status == "succeeded":
            self.emit("charge.refunded", charge_json)
        return body

    def get_refund(self, refund_id: str) -> dict[str, Any]:
        with self.lock:
            return self.refund_json(self._refund(refund_id))

    def list_refunds(self, params: dict[str, Any]) -> dict[str, Any]:
        """``GET /v1/refunds``, newest first, optionally of one ``payment_intent`` or ``charge``."""
        _reject_unknown(params, {"payment_intent", "charge", "limit", "expand"})
        limit = _integer(params.get("limit", "10"), "limit")
        if not 1 <= limit <= 100:
            raise invalid_request("This value must be between 1 and 100.", param="limit")
        with self.lock:
            refunds = [
                r
                for r in sorted(self.refunds.values(), key=lambda r: (r.created, r.id), reverse=True)
                if params.get("payment_intent") in (None, r.payment_intent)
                and params.get("charge") in (None, r.charge)
            ]
            return {
                "object": "list",
                "url": "/v1/refunds",
                "has_more": len(refunds) > limit,
                "data": [self.refund_json(r) for r in refunds[:limit]],
            }

    def settle_refund(
        self, refund_id: str, outcome: str, failure_reason: str | None = None
    ) -> dict[str, Any]:
        """Test support: a pending refund succeeds, or any refund fails (Stripe's refunds can fail
        even after they succeeded; the amount is then no longer refunded)."""
        with self.lock:
            refund = self._refund(refund_id)
            charge = self.charges[refund.charge]
            if outcome == "succeed":
                if refund.status != "pending":
                    raise invalid_request(f"Refund {refund.id} is {refund.status}, not pending.")
                refund.status = "succeeded"
            else:
                if refund.status == "failed":
                    raise invalid_request(f"Refund {refund.id} has already failed.")
                refund.status = "failed"
                refund.failure_reason = failure_reason or "expired_or_canceled_card"
                charge.amount_refunded -= refund.amount
            body = self.refund_json(refund)
            charge_json = self.charge_json(charge)
        self.emit("refund.updated", body)
        if refund.status == "succeeded":
            self.emit("charge.refunded", charge_json)
        else:
            self.emit("refund.failed", body)
        return body

    def _refund(self, refund_id: str) -> Refund:
        return _found(self.refunds, refund_id, "refund", "id")

    # ---- disputes ----------------------------------------------------------------------------

    def open_dispute(self, intent_id: str, reason: str | None, amount: int | None) -> dict[str, Any]:
        """Test support: the cardholder disputes the intent's successful charge."""
        reason = reason or "fraudulent"
        if reason not in DISPUTE_REASONS:
            raise invalid_request(f"Invalid reason: must be one of {', '.join(sorted(DISPUTE_REASONS))}")
        with self.lock:
            intent = self._intent(intent_id)
            charge = self.charges.get(intent.latest_charge or "")
            if charge is None or charge.status != "succeeded":
                raise invalid_request("Only a successful charge can be disputed.")
            dispute = Dispute(
                id=new_id("du"),
                amount=charge.amount if amount is None else amount,
                charge=charge.id,
                payment_intent=intent.id,
                currency=charge.currency,
                reason=reason,
                status="needs_response",
                created=int(time.time()),
            )
            self.disputes[dispute.id] = dispute
            body = self.dispute_json(dispute)
        self.emit("charge.dispute.created", body)
        return body

    def close_dispute(self, dispute_id: str, status: str) -> dict[str, Any]:
        """Test support: the card network decides the dispute (``won`` or ``lost``)."""
        if status not in ("won", "lost"):
            raise invalid_request("status must be won or lost")
        with self.lock:
            dispute = _found(self.disputes, dispute_id, "dispute", "id")
            dispute.status = status
            body = self.dispute_json(dispute)
        self.emit("charge.dispute.closed", body)
        return body

    @staticmethod
    def dispute_json(dispute: Dispute) -> dict[str, Any]:
        return {
            "id": dispute.id,
            "object": "dispute",
            "amount": dispute.amount,
            "charge": dispute.charge,
            "created": dispute.created,
            "currency": dispute.currency,
            "livemode": False,
            "payment_intent": dispute.payment_intent,
            "reason": dispute.reason,
            "status": dispute.status,
        }

    def _refundable_charge(self, params: dict[str, Any]) -> Charge:
        intent_id, charge_id = params.get("payment_intent"), params.get("charge")
        if (intent_id is None) == (charge_id is None):
            raise invalid_request("One of `charge` or `payment_intent` is required.")
        if intent_id is not None:
            intent = self.intents.get(intent_id)
            if intent is None:
                raise invalid_request(
                    f"No such payment_intent: '{intent_id}'", param="payment_intent", code="resource_missing"
                )
            charge = self.charges.get(intent.latest_charge or "")
        else:
            charge = self.charges.get(str(charge_id))
            if charge is None:
                raise invalid_request(
                    f"No such charge: '{charge_id}'", param="charge", code="resource_missing"
                )
        if charge is None or charge.status != "succeeded":
            raise invalid_request(
                "This PaymentIntent does not have a successful charge to refund.",
                param="payment_intent",
                code="charge_not_refundable",
            )
        return charge

    @staticmethod
    def refund_json(refund: Refund) -> dict[str, Any]:
        return {
            "id": refund.id,
            "object": "refund",
            "amount": refund.amount,
            "balance_transaction": None,
            "charge": refund.charge,
            "created": refund.created,
            "currency": refund.currency,
            "metadata": dict(refund.metadata),
            "payment_intent": refund.payment_intent,
            "reason": refund.reason,
            "status": refund.status,
            "failure_reason": refund.failure_reason,
        }

    # ---- test support ------------------------------------------------------------------------

    def stats(self, payment_id: str | None = None) -> dict[str, Any]:
        """Counts for tests: everything, or what concerns one ``metadata[paymentId]``."""
        with self.lock:
            intents = [
                i
                for i in self.intents.values()
                if payment_id is None or i.metadata.get("paymentId") == payment_id
            ]
            ids = {i.id for i in intents}
            charges = [c for c in self.charges.values() if c.payment_intent in ids]
            refunds = [r for r in self.refunds.values() if r.payment_intent in ids]
            succeeded = [c for c in charges if c.status == "succeeded"]
            body: dict[str, Any] = {
                "paymentIntents": len(intents),
                "charges": len(charges),
                "succeededCharges": len(succeeded),
                "declinedCharges": len(charges) - len(succeeded),
                "amountCaptured": sum(c.amount for c in succeeded),
                "refunds": len(refunds),
                "amountRefunded": sum(r.amount for r in refunds if r.status != "failed"),
                "canceledPaymentIntents": sum(1 for i in intents if i.status == "canceled"),
                "disputes": sum(1 for d in self.disputes.values() if d.payment_intent in ids),
            }
            if payment_id is None:
                body["apiRequests"] = self.api_requests
                body["faultsServed"] = self.faults.served
            else:
                body["paymentId"] = payment_id
                body["paymentIntentIds"] = sorted(ids)
            return body

    def reset(self) -> None:
        with self.lock:
            self.intents.clear()
            self.charges.clear()
            self.refunds.clear()
            self.disputes.clear()
            self.events.clear()
            self.faults = Faults()
            self.api_requests = 0


# ---- parameter parsing, as strict as Stripe's ---------------------------------------------------


def _reject_unknown(params: dict[str, Any], known: set[str]) -> None:
    for name in params:
        if name not in known:
            raise invalid_request(f"Received unknown parameter: {name}", param=name, code="parameter_unknown")


def _integer(value: Any, name: str) -> int:
    try:
        if isinstance(value, bool):
            raise ValueError
        return int(str(value), 10)
    except (TypeError, ValueError):
        raise invalid_request(f"Invalid integer: {value}", param=name, code="parameter_invalid_integer")


def _amount(value: Any, required: bool = False) -> int:
    if value is None:
        raise invalid_request("Missing required param: amount.", param="amount", code="parameter_missing")
    amount = _integer(value, "amount")
    if amount < 1:
        raise invalid_request(
            "This value must be greater than or equal to 1.", param="amount", code="parameter_invalid_integer"
        )
    if amount > MAX_AMOUNT:
        raise invalid_request("Amount must be no more than 99999999", param="amount", code="amount_too_large")
    return amount


def _currency(value: Any) -> str:
    if value is None:
        raise invalid_request("Missing required param: currency.", param="currency", code="parameter_missing")
    text = str(value)
    if len(text) != 3 or not text.isascii() or not text.isalpha():
        raise invalid_request(f"Invalid currency: {text}.", param="currency", code="parameter_invalid_string")
    return text.lower()


def _boolean(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise invalid_request(f"Invalid boolean: {value}", param=name)


def _metadata(value: Any) -> dict[str, str]:
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise invalid_request("Invalid object", param="metadata")
    if len(value) > 50:
        raise invalid_request("You can specify up to 50 keys.", param="metadata")
    for key, item in value.items():
        if len(key) > 40 or not isinstance(item, str) or len(item) > 500:
            raise invalid_request(f"Invalid metadata[{key}]", param=f"metadata[{key}]")
    return {str(k): str(v) for k, v in value.items()}


def _created_matches(created: int, bounds: dict[str, Any]) -> bool:
    checks = {
        "gte": lambda b: created >= b,
        "gt": lambda b: created > b,
        "lte": lambda b: created <= b,
        "lt": lambda b: created < b,
    }
    for op, bound in bounds.items():
        if op not in checks:
            raise invalid_request(f"Received unknown parameter: created[{op}]", param=f"created[{op}]")
        if not checks[op](_integer(bound, f"created[{op}]")):
            return False
    return True


def _after(intents: list[PaymentIntent], cursor: Any, name: str) -> list[PaymentIntent]:
    for index, intent in enumerate(intents):
        if intent.id == cursor:
            return intents[index + 1 :]
    raise invalid_request(f"No such payment_intent: '{cursor}'", param=name, code="resource_missing")


def _found(table: dict[str, T], object_id: str, kind: str, param: str) -> T:
    """The stored object, or Stripe's 404 ``resource_missing`` for an unknown id."""
    found = table.get(object_id)
    if found is None:
        raise invalid_request(
            f"No such {kind}: '{object_id}'", param=param, code="resource_missing", status=404
        )
    return found


def _unexpected_state(intent: PaymentIntent, action: str) -> StripeError:
    return invalid_request(
        f"You cannot {action} this PaymentIntent because it has a status of {intent.status}.",
        code="payment_intent_unexpected_state",
    )


def _next_action(intent: PaymentIntent) -> dict[str, Any] | None:
    """What Stripe.js does next for a ``requires_action`` intent (3-D Secure)."""
    if intent.status != "requires_action":
        return None
    return {
        "type": "use_stripe_sdk",
        "use_stripe_sdk": {"type": "three_d_secure_redirect", "stripe_js": f"/_sandbox/3ds/{intent.id}"},
    }


_CLAUSE = re.compile(r"""\s*(metadata\[['"]([^'"]+)['"]\]|status)\s*:\s*['"]([^'"]*)['"]\s*""")


def _search_clauses(query: str) -> list[tuple[str, str]]:
    """``metadata['paymentId']:'x' AND status:'succeeded'`` → [("metadata.paymentId", "x"), …]."""
    clauses = []
    for part in re.split(r"\s+AND\s+", query.strip()):
        match = _CLAUSE.fullmatch(part)
        if match is None:
            raise invalid_request(
                f"Invalid search query: {query!r} (the sandbox supports metadata['key']:'value' and "
                "status:'value' clauses joined by AND)",
                param="query",
            )
        field_name = f"metadata.{match.group(2)}" if match.group(2) else "status"
        clauses.append((field_name, match.group(3)))
    return clauses


def _clause_matches(intent: PaymentIntent, field_name: str, value: str) -> bool:
    if field_name == "status":
        return intent.status == value
    return intent.metadata.get(field_name.removeprefix("metadata.")) == value
