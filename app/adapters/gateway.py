"""The payment gateway: Stripe through its official library, behind a shared circuit breaker.

A charge first creates a PaymentIntent (``Idempotency-Key = intent-<paymentId>``), which the
worker stores, then confirms it (``confirm-<paymentId>``): however often a task retries or is
redelivered, Stripe (or the sandbox) charges once and replays the first answer. A void cancels the
stored intent, so a confirm still in flight is refused, or, if it won the race, is refunded.
Refunds use their own key (``refund-<paymentId>``). Stripe's errors become three kinds that the
services can act on:

- ``PaymentDeclined``: the card was declined (HTTP 402, ``card_error``); final.
- ``GatewayUnavailable``: connection errors, timeouts, 5xx, 429, an open circuit, or our own
  credentials refused; retry later (the outcome of the call may be unknown, the key makes a retry
  safe).
- ``GatewayRejected``: the request itself is invalid (400/404 ``invalid_request_error``); final.

Only ``GatewayUnavailable`` counts as a breaker failure: a decline means the gateway is healthy.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Protocol, TypeVar

import pybreaker
import stripe

from app.adapters.breakers import SharedCircuitBreaker
from app.domain.errors import BadSignature
from app.log import get_logger

log = get_logger(__name__)

T = TypeVar("T")

# Currencies that Stripe counts in whole units, not cents (https://docs.stripe.com/currencies).
ZERO_DECIMAL_CURRENCIES = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga"}
    | {"pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"}
)
CONNECT_TIMEOUT_SECONDS = 3.0
# Our clock and the gateway's may disagree: look a little further back than the payment's creation.
LOOKUP_CLOCK_SKEW_SECONDS = 600


def to_minor_units(amount: Decimal, currency: str) -> int:
    """``Decimal("12.34"), "USD"`` → ``1234``: Stripe's integer amount in the smallest unit."""
    exponent = Decimal(1) if currency.lower() in ZERO_DECIMAL_CURRENCIES else Decimal(100)
    return int((amount * exponent).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def from_minor_units(amount: int, currency: str) -> Decimal:
    """``1234, "USD"`` → ``Decimal("12.34")``."""
    exponent = Decimal(1) if currency.lower() in ZERO_DECIMAL_CURRENCIES else Decimal(100)
    return (Decimal(amount) / exponent).quantize(Decimal("0.01"))


GATEWAY_BREAKER = "payment-gateway"


class GatewayError(Exception):
    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class PaymentDeclined(GatewayError):
    """The gateway declined the charge; ``reason`` is the decline code (e.g. ``insufficient_funds``)."""

    def __init__(
        self, message: str, *, code: str | None, decline_code: str | None = None, reference: str | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.decline_code = decline_code
        self.reference = reference  # the declined PaymentIntent, when the gateway made one

    @property
    def reason(self) -> str:
        return (self.decline_code or self.code or "card_declined").upper()


class GatewayUnavailable(GatewayError):
    """The gateway could not be used now (or answered in a way that says: try again later)."""


class GatewayRejected(GatewayError):
    """The gateway refused the request as invalid; sending it again would not help."""

    @property
    def reason(self) -> str:
        return (self.code or "gateway_rejected").upper()


class AlreadyRefunded(GatewayRejected):
    """The charge was already refunded in full (e.g. from the gateway's dashboard)."""


@dataclass(frozen=True)
class ChargeResult:
    reference: str  # the PaymentIntent id: our ``gateway_reference``
    charge_id: str | None
    amount: int
    currency: str
    replayed: bool  # the gateway answered from its idempotency store: no new charge


@dataclass(frozen=True)
class RefundResult:
    reference: str  # the Refund id
    amount: int
    replayed: bool
    status: str = "succeeded"  # Stripe's: pending | requires_action | succeeded | failed | canceled
    failure_reason: str | None = None


class PaymentGateway(Protocol):
    """What the payment services need from a gateway."""

    def create_intent(
        self, payment_id: uuid.UUID, order_id: uuid.UUID, amount: Decimal, currency: str
    ) -> str: ...

    def confirm_intent(
        self, payment_id: uuid.UUID, intent_id: str, amount: Decimal, currency: str, payment_method: str
    ) -> ChargeResult: ...

    def void_intent(self, intent_id: str) -> ChargeResult | None: ...

    def refund(
        self,
        payment_id: uuid.UUID,
        gateway_reference: str,
        amount: Decimal,
        currency: str,
        *,
        refund_id: uuid.UUID | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> RefundResult: ...

    def get_refund(self, reference: str) -> RefundResult: ...

    def find_charge(self, payment_id: uuid.UUID, created_after: datetime) -> ChargeResult | None: ...


class StripeGateway:
    """Charges and refunds through ``stripe.StripeClient`` (works against Stripe or the sandbox)."""

    def __init__(
        self,
        api_key: str,
        api_base: str,
        *,
        timeout: float,
        breaker: SharedCircuitBreaker | None = None,
    ) -> None:
        self.client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base},
            # Retries are the task's job (with backoff, visible in ``attempts``), not the library's.
            max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=(min(CONNECT_TIMEOUT_SECONDS, timeout), timeout)),
        )
        self.breaker = breaker

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> StripeGateway:
        """The process's gateway for this configuration (built once, then reused)."""
        key = (
            str(config["STRIPE_API_KEY"]),
            str(config["STRIPE_API_BASE"]),
            float(config["PAYMENT_GATEWAY_TIMEOUT_SECONDS"]),
            str(config["REDIS_URL"]),
            int(config["PAYMENT_BREAKER_FAIL_MAX"]),
            float(config["PAYMENT_BREAKER_RESET_SECONDS"]),
        )
        with _gateways_lock:
            gateway = _gateways.get(key)
            if gateway is None:
                api_key, api_base, timeout, redis_url, fail_max, reset = key
                breaker = SharedCircuitBreaker(
                    GATEWAY_BREAKER,
                    redis_url,
                    fail_max=fail_max,
                    reset_timeout=reset,
                    exclude=[PaymentDeclined, GatewayRejected],
                )
                gateway = _gateways[key] = cls(api_key, api_base, timeout=timeout, breaker=breaker)
            return gateway

    def create_intent(
        self, payment_id: uuid.UUID, order_id: uuid.UUID, amount: Decimal, currency: str
    ) -> str:
        """Create (not confirm) the payment's PaymentIntent; its id. Under the key
        ``intent-<paymentId>``, so a retried creation returns the same intent."""
        params: dict[str, Any] = {
            "amount": to_minor_units(amount, currency),
            "currency": currency.lower(),
            # Charged by the worker, with no customer present: no redirect-based methods.
            "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
            "metadata": {"paymentId": str(payment_id), "orderId": str(order_id)},
        }
        intent = self._call(
            lambda: self.client.v1.payment_intents.create(
                params,  # type: ignore[arg-type]
                {"idempotency_key": f"intent-{payment_id}"},
            )
        )
        intent_id = getattr(intent, "id", None)
        if not isinstance(intent_id, str) or not intent_id:
            raise GatewayUnavailable("the gateway's answer is not a PaymentIntent", code="malformed_answer")
        log.info("gateway_intent_created", payment_id=str(payment_id), intent=intent_id)
        return intent_id

    def confirm_intent(
        self, payment_id: uuid.UUID, intent_id: str, amount: Decimal, currency: str, payment_method: str
    ) -> ChargeResult:
        """Confirm the stored PaymentIntent with the customer's method, under ``confirm-<paymentId>``
        (a retried confirm replays the first answer). Refused by the gateway once it was cancelled."""
        params: dict[str, Any] = {"payment_method": payment_method}
        intent = self._call(
            lambda: self.client.v1.payment_intents.confirm(
                intent_id,
                params,  # type: ignore[arg-type]
                {"idempotency_key": f"confirm-{payment_id}"},
            )
        )
        return self._charged(intent, payment_id, amount, currency)

    def charge(
        self, payment_id: uuid.UUID, order_id: uuid.UUID, amount: Decimal, currency: str, payment_method: str
    ) -> ChargeResult:
        """Create then confirm the payment's PaymentIntent (both steps idempotent)."""
        intent_id = self.create_intent(payment_id, order_id, amount, currency)
        return self.confirm_intent(payment_id, intent_id, amount, currency, payment_method)

    def _charged(self, intent: Any, payment_id: uuid.UUID, amount: Decimal, currency: str) -> ChargeResult:
        replayed = _replayed(intent)
        _check_intent(intent, payment_id, to_minor_units(amount, currency), currency.lower())
        if intent.status != "succeeded":
            # e.g. requires_action (3-D Secure): nobody is there to authenticate, so it is a decline.
            raise PaymentDeclined(
                f"the payment intent ended in status {intent.status}",
                code="authentication_required" if intent.status == "requires_action" else intent.status,
                reference=intent.id,
            )
        latest = intent.latest_charge
        charge_id = latest if isinstance(latest, str) or latest is None else latest.id
        log.info("gateway_charged", payment_id=str(payment_id), reference=intent.id, replayed=replayed)
        return ChargeResult(intent.id, charge_id, intent.amount, intent.currency, replayed)

    def void_intent(self, intent_id: str) -> ChargeResult | None:
        """Cancel a PaymentIntent: None when no money was (or will be) taken for it; the charge when
        a confirm won the race (a succeeded intent cannot be cancelled: refund it). Safe to repeat."""
        try:
            self._call(
                lambda: self.client.v1.payment_intents.cancel(
                    intent_id,
                    {"cancellation_reason": "abandoned"},
                    {"idempotency_key": f"cancel-{intent_id}"},
                )
            )
            log.info("gateway_intent_cancelled", intent=intent_id)
            return None
        except GatewayRejected as exc:
            if exc.code != "payment_intent_unexpected_state":
                raise
        intent = self._call(lambda: self.client.v1.payment_intents.retrieve(intent_id))
        if intent.status == "canceled":
            return None
        if intent.status != "succeeded":
            raise GatewayUnavailable(
                f"the payment intent is {intent.status}, neither cancelled nor charged",
                code="intent_unsettled",
            )
        latest = intent.latest_charge
        charge_id = latest if isinstance(latest, str) or latest is None else latest.id
        return ChargeResult(intent.id, charge_id, intent.amount, intent.currency, replayed=True)

    def refund(
        self,
        payment_id: uuid.UUID,
        gateway_reference: str,
        amount: Decimal,
        currency: str,
        *,
        refund_id: uuid.UUID | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> RefundResult:
        """Refund ``amount`` of a charge under the refund's own key ``refund-<refundId>`` (without
        a refund id: ``refund-<paymentId>``, one refund per payment). The answer carries the
        refund's status: ``pending`` ones are settled later (webhook or poll)."""
        meta = {"paymentId": str(payment_id), **({"refundId": str(refund_id)} if refund_id else {})}
        params: dict[str, Any] = {
            "payment_intent": gateway_reference,
            "amount": to_minor_units(amount, currency),
            "metadata": {**meta, **(metadata or {})},
        }
        key = f"refund-{refund_id or payment_id}"
        refund = self._call(
            lambda: self.client.v1.refunds.create(
                params,  # type: ignore[arg-type]
                {"idempotency_key": key},
            )
        )
        result = _refund_result(refund)
        log.info(
            "gateway_refunded", payment_id=str(payment_id), reference=result.reference, status=result.status
        )
        return result

    def get_refund(self, reference: str) -> RefundResult:
        """The refund as the gateway has it now (the sweep polls pending ones)."""
        return _refund_result(self._call(lambda: self.client.v1.refunds.retrieve(reference)))

    def find_charge(self, payment_id: uuid.UUID, created_after: datetime) -> ChargeResult | None:
        """The successful charge made for this payment, if any, found by its ``paymentId`` metadata
        through the gateway's search (``metadata['paymentId']:'…' AND status:'succeeded'``), not a
        scan of every PaymentIntent. Search is eventually consistent (Stripe: under a minute); the
        lookup runs ``LOOKUP_DELAY_SECONDS`` after the void, well past that. ``created_after``
        bounds what may match: an intent older than the payment (minus clock skew) is not its own.
        """
        since = int(created_after.timestamp()) - LOOKUP_CLOCK_SKEW_SECONDS
        query = f"metadata['paymentId']:'{payment_id}' AND status:'succeeded'"

        def search() -> Any:
            found = self.client.v1.payment_intents.search({"query": query, "limit": 10})
            for intent in found.data:
                metadata = intent.metadata
                if (
                    intent.status == "succeeded"
                    and intent.created >= since
                    and metadata
                    and metadata.to_dict().get("paymentId") == str(payment_id)
                ):
                    return intent
            return None

        intent = self._call(search)
        if intent is None:
            return None
        latest = intent.latest_charge
        charge_id = latest if isinstance(latest, str) or latest is None else latest.id
        return ChargeResult(intent.id, charge_id, intent.amount, intent.currency, replayed=True)

    def _call(self, func: Callable[[], T]) -> T:
        def translated() -> T:
            try:
                return func()
            except stripe.StripeError as exc:
                raise translate(exc) from exc
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                # The library choked on an answer that is not Stripe's shape (e.g. an error body
                # that is not an object): the gateway is not well; retry later, never crash the task.
                raise GatewayUnavailable(
                    f"malformed gateway answer: {exc!r}", code="malformed_answer"
                ) from exc

        if self.breaker is None:
            return translated()
        try:
            return self.breaker.call(translated)
        except pybreaker.CircuitBreakerError as exc:
            raise GatewayUnavailable("the payment gateway circuit is open", code="circuit_open") from exc


_gateways: dict[tuple[Any, ...], StripeGateway] = {}
_gateways_lock = threading.Lock()


def _check_intent(intent: Any, payment_id: uuid.UUID, amount: int, currency: str) -> None:
    """Trust no answer blindly (OWASP API10): it must be a PaymentIntent for this very charge.

    Anything else is treated like an unreachable gateway — retried, then left PENDING to expire,
    when the charge is looked up by its metadata — because a charge may exist: never guess.
    """

    def field(name: str) -> Any:
        try:
            return getattr(intent, name, None)
        except Exception:  # a malformed object may fail in any way
            return None

    if not isinstance(field("id"), str) or not isinstance(field("status"), str):
        raise GatewayUnavailable("the gateway's answer is not a PaymentIntent", code="malformed_answer")
    if field("status") != "succeeded":
        return  # a decline: the caller reports it with the gateway's status
    metadata = field("metadata")
    to_dict = getattr(metadata, "to_dict", None)
    asked_for = to_dict().get("paymentId") if callable(to_dict) else None
    if field("amount") != amount or field("currency") != currency or asked_for != str(payment_id):
        raise GatewayUnavailable(
            f"the gateway confirmed a charge other than the one asked: {field('amount')!r} "
            f"{field('currency')!r} for payment {asked_for!r}",
            code="unexpected_answer",
        )


WEBHOOK_TOLERANCE_SECONDS = 300  # an older signature is stale (a replay), as Stripe's own default


def verify_webhook(payload: bytes, signature: str | None, secret: str) -> dict[str, Any]:
    """A webhook's event, verified with Stripe's own helper (``Stripe-Signature``: HMAC-SHA256 of
    ``<timestamp>.<payload>`` under the endpoint secret, at most 5 minutes old); raises
    ``BadSignature`` for a missing, wrong or stale signature or a body that is not an event."""
    if not signature:
        raise BadSignature("The Stripe-Signature header is missing")
    try:
        event = stripe.Webhook.construct_event(
            payload.decode("utf-8"), signature, secret, tolerance=WEBHOOK_TOLERANCE_SECONDS
        )
    except stripe.SignatureVerificationError as exc:
        raise BadSignature("The Stripe-Signature header does not verify (wrong or stale)") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadSignature("The body is not a gateway event") from exc
    body = event.to_dict()
    data = body.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if (
        not isinstance(body.get("id"), str)
        or not isinstance(body.get("type"), str)
        or not isinstance(obj, dict)
    ):
        raise BadSignature("The body is not a gateway event")
    return body


def _refund_result(refund: Any) -> RefundResult:
    reference = getattr(refund, "id", None)
    status = getattr(refund, "status", None)
    if not isinstance(reference, str) or not isinstance(status, str):
        raise GatewayUnavailable("the gateway's answer is not a Refund", code="malformed_answer")
    failure = getattr(refund, "failure_reason", None)
    return RefundResult(
        reference,
        int(getattr(refund, "amount", 0) or 0),
        _replayed(refund),
        status=status,
        failure_reason=failure if isinstance(failure, str) else None,
    )


def _replayed(obj: Any) -> bool:
    response = getattr(obj, "last_response", None)
    headers = getattr(response, "headers", None) or {}
    return str(headers.get("Idempotent-Replayed", "")).lower() == "true"


def translate(exc: stripe.StripeError) -> GatewayError:
    """Stripe's exception classes → what the payment services can act on."""
    message = exc.user_message or str(exc) or type(exc).__name__
    if isinstance(exc, stripe.CardError):
        error = exc.error
        intent = getattr(error, "payment_intent", None) if error is not None else None
        return PaymentDeclined(
            message,
            code=exc.code,
            decline_code=getattr(error, "decline_code", None) if error is not None else None,
            reference=getattr(intent, "id", None),
        )
    if isinstance(exc, (stripe.APIConnectionError, stripe.RateLimitError)):
        return GatewayUnavailable(message, code=exc.code or type(exc).__name__)
    if isinstance(exc, (stripe.AuthenticationError, stripe.PermissionError)):
        # Our credentials are refused: not the customer's fault; retry once the operator fixes it.
        return GatewayUnavailable(message, code="gateway_credentials_refused")
    if isinstance(exc, stripe.IdempotencyError):
        return GatewayRejected(message, code="idempotency_error")
    if isinstance(exc, stripe.InvalidRequestError):
        if exc.code == "charge_already_refunded":
            return AlreadyRefunded(message, code=exc.code)
        return GatewayRejected(message, code=exc.code or "invalid_request")
    # APIError (5xx, unexpected answers) and anything else: the gateway is not well now.
    return GatewayUnavailable(message, code=exc.code or f"http_{exc.http_status}")
