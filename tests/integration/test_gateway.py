"""The gateway adapter against the sandbox: the official library, idempotency, errors, breaker."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

import pytest

from app.adapters.breakers import SharedCircuitBreaker
from app.adapters.gateway import (
    AlreadyRefunded,
    GatewayRejected,
    GatewayUnavailable,
    PaymentDeclined,
    PaymentGateway,
    StripeGateway,
)
from tests.sandbox import API_KEY, Sandbox, sandbox_fixture  # noqa: F401

AMOUNT = Decimal("19.99")


def gateway(
    sandbox: Sandbox, *, timeout: float = 5.0, breaker: SharedCircuitBreaker | None = None
) -> StripeGateway:
    return StripeGateway(API_KEY, sandbox.url, timeout=timeout, breaker=breaker)


def breaker(redis_url: str | None, *, fail_max: int = 3, reset: float = 2.0) -> SharedCircuitBreaker:
    return SharedCircuitBreaker(
        f"test-{uuid.uuid4().hex[:8]}",
        redis_url,
        fail_max=fail_max,
        reset_timeout=reset,
        exclude=[PaymentDeclined, GatewayRejected],
    )


def charge(gw: PaymentGateway, payment_id: uuid.UUID, method: str = "pm_card_visa", amount: Decimal = AMOUNT):
    return gw.charge(payment_id, uuid.UUID(int=7), amount, "USD", method)


def test_a_charge_creates_one_confirmed_payment_intent_with_the_payment_metadata(sandbox: Sandbox) -> None:
    payment_id = uuid.uuid4()
    result = charge(gateway(sandbox), payment_id)
    assert result.reference.startswith("pi_") and result.charge_id and result.charge_id.startswith("ch_")
    assert (result.amount, result.currency, result.replayed) == (1999, "usd", False)
    intent = sandbox.api("GET", f"/v1/payment_intents/{result.reference}").json()
    assert intent["metadata"] == {"paymentId": str(payment_id), "orderId": str(uuid.UUID(int=7))}
    assert sandbox.stats(payment_id)["succeededCharges"] == 1


@pytest.mark.parametrize(
    ("method", "reason"),
    [
        ("pm_card_chargeDeclined", "GENERIC_DECLINE"),
        ("pm_card_chargeDeclinedInsufficientFunds", "INSUFFICIENT_FUNDS"),
    ],
)
def test_a_declined_card_raises_payment_declined_with_its_decline_code(
    sandbox: Sandbox, method: str, reason: str
) -> None:
    with pytest.raises(PaymentDeclined) as declined:
        charge(gateway(sandbox), uuid.uuid4(), method)
    assert declined.value.reason == reason
    assert declined.value.reference and declined.value.reference.startswith("pi_")


def test_charging_the_same_payment_again_replays_the_first_payment_intent(sandbox: Sandbox) -> None:
    payment_id = uuid.uuid4()
    gw = gateway(sandbox)
    first, second = charge(gw, payment_id), charge(gw, payment_id)
    assert second.reference == first.reference and second.replayed is True
    assert sandbox.stats(payment_id)["charges"] == 1


def test_the_same_payment_with_other_parameters_is_rejected_not_charged(sandbox: Sandbox) -> None:
    payment_id = uuid.uuid4()
    gw = gateway(sandbox)
    charge(gw, payment_id)
    with pytest.raises(GatewayRejected) as rejected:
        charge(gw, payment_id, amount=Decimal("1.00"))
    assert rejected.value.code == "idempotency_error"
    assert sandbox.stats(payment_id)["charges"] == 1


def test_server_errors_are_transient_and_a_retry_then_charges_once(sandbox: Sandbox) -> None:
    payment_id = uuid.uuid4()
    gw = gateway(sandbox)
    sandbox.faults(failNext=2, status=503)
    for _ in range(2):
        with pytest.raises(GatewayUnavailable):
            charge(gw, payment_id)
    assert charge(gw, payment_id).replayed is False
    assert sandbox.stats(payment_id)["succeededCharges"] == 1


def test_rate_limiting_is_transient(sandbox: Sandbox) -> None:
    sandbox.faults(failNext=1, status=429)
    with pytest.raises(GatewayUnavailable):
        charge(gateway(sandbox), uuid.uuid4())


def test_a_timeout_is_transient_and_the_retry_replays_the_charge_the_gateway_made(sandbox: Sandbox) -> None:
    payment_id = uuid.uuid4()
    intent_id = gateway(sandbox).create_intent(payment_id, uuid.UUID(int=7), AMOUNT, "USD")
    sandbox.faults(delayMs=1500)
    with pytest.raises(GatewayUnavailable):
        gateway(sandbox, timeout=0.3).confirm_intent(payment_id, intent_id, AMOUNT, "USD", "pm_card_visa")
    sandbox.clear_faults()
    # The sandbox finished the charge although the answer was lost: the retry gets that one back.
    retried = charge(gateway(sandbox), payment_id)
    assert retried.replayed is True and retried.reference == intent_id
    assert sandbox.stats(payment_id)["succeededCharges"] == 1


def test_a_timed_out_creation_is_replayed_and_charged_once(sandbox: Sandbox) -> None:
    payment_id = uuid.uuid4()
    sandbox.faults(delayMs=1500)
    with pytest.raises(GatewayUnavailable):
        charge(gateway(sandbox, timeout=0.3), payment_id)
    sandbox.clear_faults()
    assert charge(gateway(sandbox), payment_id).replayed is False  # the intent existed, the charge did not
    stats = sandbox.stats(payment_id)
    assert (stats["paymentIntents"], stats["succeededCharges"]) == (1, 1)


def test_voiding_an_intent_cancels_it_and_a_later_confirm_is_refused(sandbox: Sandbox) -> None:
    payment_id = uuid.uuid4()
    gw = gateway(sandbox)
    intent_id = gw.create_intent(payment_id, uuid.UUID(int=7), AMOUNT, "USD")
    assert gw.void_intent(intent_id) is None
    assert gw.void_intent(intent_id) is None  # again: still nothing charged
    with pytest.raises(GatewayRejected) as refused:
        gw.confirm_intent(payment_id, intent_id, AMOUNT, "USD", "pm_card_visa")
    assert refused.value.code == "payment_intent_unexpected_state"
    assert sandbox.stats(payment_id)["succeededCharges"] == 0


def test_voiding_a_charged_intent_returns_the_charge_to_refund(sandbox: Sandbox) -> None:
    payment_id = uuid.uuid4()
    gw = gateway(sandbox)
    charged = charge(gw, payment_id)
    found = gw.void_intent(charged.reference)
    assert found is not None and found.reference == charged.reference and found.amount == charged.amount


def test_an_unreachable_gateway_is_transient() -> None:
    gw = StripeGateway(API_KEY, "http://127.0.0.1:9", timeout=1)
    with pytest.raises(GatewayUnavailable):
        charge(gw, uuid.uuid4())


def test_an_unknown_payment_method_is_rejected(sandbox: Sandbox) -> None:
    with pytest.raises(GatewayRejected) as rejected:
        charge(gateway(sandbox), uuid.uuid4(), "pm_card_unknown")
    assert rejected.value.reason == "RESOURCE_MISSING"


def test_a_refund_returns_the_charge_and_a_repeat_replays_it(sandbox: Sandbox) -> None:
    payment_id = uuid.uuid4()
    gw = gateway(sandbox)
    charged = charge(gw, payment_id)
    refund = gw.refund(payment_id, charged.reference, AMOUNT, "USD")
    assert refund.reference.startswith("re_") and refund.amount == 1999
    again = gw.refund(payment_id, charged.reference, AMOUNT, "USD")
    assert again.reference == refund.reference and again.replayed is True
    assert sandbox.stats(payment_id)["amountRefunded"] == 1999


def test_refunding_a_charge_refunded_elsewhere_says_so(sandbox: Sandbox) -> None:
    payment_id = uuid.uuid4()
    gw = gateway(sandbox)
    charged = charge(gw, payment_id)
    sandbox.api("POST", "/v1/refunds", data={"payment_intent": charged.reference})  # e.g. the dashboard
    with pytest.raises(AlreadyRefunded):
        gw.refund(payment_id, charged.reference, AMOUNT, "USD")


# ---- the circuit breaker ----------------------------------------------------------------------


def test_the_breaker_opens_after_consecutive_transient_failures_and_stops_calling(
    sandbox: Sandbox, redis_url: str
) -> None:
    gw = gateway(sandbox, breaker=breaker(redis_url, fail_max=3, reset=30))
    sandbox.faults(failNext=100, status=503)
    for _ in range(3):
        with pytest.raises(GatewayUnavailable):
            charge(gw, uuid.uuid4())
    before = sandbox.stats()["apiRequests"]
    with pytest.raises(GatewayUnavailable) as refused:
        charge(gw, uuid.uuid4())
    assert refused.value.code == "circuit_open"
    assert sandbox.stats()["apiRequests"] == before
    assert gw.breaker is not None and gw.breaker.current_state == "open"


def test_declines_and_invalid_requests_do_not_open_the_breaker(sandbox: Sandbox, redis_url: str) -> None:
    gw = gateway(sandbox, breaker=breaker(redis_url, fail_max=2))
    for method in ("pm_card_chargeDeclined", "pm_card_chargeDeclined", "pm_card_unknown", "pm_card_unknown"):
        with pytest.raises((PaymentDeclined, GatewayRejected)):
            charge(gw, uuid.uuid4(), method)
    assert gw.breaker is not None and gw.breaker.current_state == "closed"
    assert charge(gw, uuid.uuid4()).reference


def test_after_the_pause_one_trial_call_goes_through_and_a_success_closes_the_breaker(
    sandbox: Sandbox, redis_url: str
) -> None:
    gw = gateway(sandbox, breaker=breaker(redis_url, fail_max=2, reset=1))
    sandbox.faults(failNext=100, status=503)
    for _ in range(2):
        with pytest.raises(GatewayUnavailable):
            charge(gw, uuid.uuid4())
    # Once the pause is over, a trial call reaches the gateway; it fails, so the circuit reopens.
    before = sandbox.stats()["apiRequests"]
    assert _first_call_let_through(gw) == "failed"
    assert sandbox.stats()["apiRequests"] == before + 1
    assert _outcome(gw) == "circuit_open"
    # The next trial succeeds and closes the circuit.
    sandbox.clear_faults()
    assert _first_call_let_through(gw) == "charged"
    assert gw.breaker is not None and gw.breaker.current_state == "closed"


def _first_call_let_through(gw: StripeGateway, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        outcome = _outcome(gw)
        if outcome != "circuit_open":
            return outcome
    raise AssertionError("the circuit never let a call through")


def _outcome(gw: StripeGateway) -> str:
    try:
        charge(gw, uuid.uuid4())
    except GatewayUnavailable as exc:
        if exc.code == "circuit_open":
            time.sleep(0.05)
            return "circuit_open"
        return "failed"
    return "charged"


def test_the_breaker_state_is_shared_by_every_process_through_redis(sandbox: Sandbox, redis_url: str) -> None:
    name = f"shared-{uuid.uuid4().hex[:8]}"
    one, other = (
        SharedCircuitBreaker(name, redis_url, fail_max=2, reset_timeout=30, exclude=[PaymentDeclined])
        for _ in range(2)
    )
    sandbox.faults(failNext=100, status=500)
    for _ in range(2):
        with pytest.raises(GatewayUnavailable):
            charge(gateway(sandbox, breaker=one), uuid.uuid4())
    assert other.uses_redis and other.current_state == "open"
    with pytest.raises(GatewayUnavailable) as refused:
        charge(gateway(sandbox, breaker=other), uuid.uuid4())
    assert refused.value.code == "circuit_open"


def test_without_redis_the_breaker_falls_back_to_memory_and_charges_still_go_through(
    sandbox: Sandbox,
) -> None:
    local = breaker("redis://127.0.0.1:9/0", fail_max=2, reset=30)
    gw = gateway(sandbox, breaker=local)
    assert charge(gw, uuid.uuid4()).reference
    assert local.uses_redis is False
    sandbox.faults(failNext=100, status=503)
    for _ in range(2):
        with pytest.raises(GatewayUnavailable):
            charge(gw, uuid.uuid4())
    with pytest.raises(GatewayUnavailable) as refused:
        charge(gw, uuid.uuid4())
    assert refused.value.code == "circuit_open"


def test_a_charge_is_found_by_its_payment_id_through_the_gateways_search(sandbox: Sandbox) -> None:
    from datetime import UTC, datetime

    payment_id, other = uuid.uuid4(), uuid.uuid4()
    gw = gateway(sandbox)
    charged = charge(gw, payment_id)
    charge(gw, other)
    found = gw.find_charge(payment_id, datetime.now(UTC))
    assert found is not None and found.reference == charged.reference
    assert gw.find_charge(uuid.uuid4(), datetime.now(UTC)) is None
