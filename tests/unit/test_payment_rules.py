"""The payment's rules: when to charge, what to refund, when an outcome is unknown, backoff."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from app.adapters.gateway import GatewayRejected, PaymentDeclined, to_minor_units
from app.domain import payments as pay


def payment(**fields: object) -> pay.Payment:
    values: dict[str, object] = {
        "id": uuid.uuid4(),
        "order_id": uuid.uuid4(),
        "amount": Decimal("10.00"),
        "currency": "USD",
        "status": pay.PENDING,
        "method": pay.CREDIT_CARD,
        "payment_token": "pm_card_visa",
        "attempts": 0,
        "intent_id": None,
        "gateway_reference": None,
        "refund_reference": None,
        "failure_reason": None,
    }
    values.update(fields)
    return pay.Payment(**values)


def test_a_pending_payment_of_a_placed_order_is_charged() -> None:
    assert pay.charge_step(payment(), "PLACED") == pay.CHARGE


@pytest.mark.parametrize("status", [pay.COMPLETED, pay.FAILED, pay.REFUNDED])
def test_a_payment_that_is_no_longer_pending_is_never_charged(status: str) -> None:
    assert pay.charge_step(payment(status=status), "PLACED") == pay.SKIP


@pytest.mark.parametrize("order_status", ["CANCELLED", "SHIPPED", "DELIVERED"])
def test_a_payment_of_an_order_that_is_not_placed_is_never_charged(order_status: str) -> None:
    assert pay.charge_step(payment(), order_status) == pay.SKIP


def test_a_completed_payment_refunds_its_charge() -> None:
    assert pay.refundable_reference(payment(status=pay.COMPLETED, gateway_reference="pi_1")) == "pi_1"


def test_a_voided_payment_charged_after_all_refunds_that_charge() -> None:
    charged_late = payment(status=pay.FAILED, failure_reason="ORDER_CANCELLED", gateway_reference="pi_2")
    assert pay.refundable_reference(charged_late) == "pi_2"


@pytest.mark.parametrize(
    "state",
    [
        {"status": pay.PENDING},
        {"status": pay.FAILED, "failure_reason": "INSUFFICIENT_FUNDS"},
        {"status": pay.REFUNDED, "gateway_reference": "pi_3", "refund_reference": "re_3"},
    ],
)
def test_nothing_to_refund_without_a_standing_charge(state: dict[str, object]) -> None:
    assert pay.refundable_reference(payment(**state)) is None


@pytest.mark.parametrize("reason", ["ORDER_CANCELLED", "PAYMENT_TIMEOUT"])
def test_a_voided_payment_after_an_unanswered_attempt_has_an_unknown_outcome(reason: str) -> None:
    assert pay.outcome_unknown(payment(status=pay.FAILED, failure_reason=reason, attempts=1))


@pytest.mark.parametrize(
    "state",
    [
        {"status": pay.FAILED, "failure_reason": "ORDER_CANCELLED", "attempts": 0},  # never tried
        {"status": pay.FAILED, "failure_reason": "GENERIC_DECLINE", "attempts": 1},  # the gateway said no
        {"status": pay.FAILED, "failure_reason": "ORDER_CANCELLED", "attempts": 1, "gateway_reference": "pi"},
        {"status": pay.PENDING, "attempts": 3},
        {"status": pay.COMPLETED, "attempts": 1, "gateway_reference": "pi"},
    ],
)
def test_the_outcome_is_known_otherwise(state: dict[str, object]) -> None:
    assert not pay.outcome_unknown(payment(**state))


def test_a_voided_payment_with_a_stored_intent_has_that_intent_cancelled() -> None:
    voided = payment(status=pay.FAILED, failure_reason="PAYMENT_TIMEOUT", attempts=1, intent_id="pi_1")
    assert pay.intent_to_void(voided) == "pi_1"


@pytest.mark.parametrize(
    "state",
    [
        {"status": pay.FAILED, "failure_reason": "ORDER_CANCELLED", "attempts": 1},  # no intent stored
        {"status": pay.PENDING, "attempts": 1, "intent_id": "pi_1"},  # not voided
        {"status": pay.FAILED, "failure_reason": "CARD_DECLINED", "attempts": 1, "intent_id": "pi_1"},
        {"status": pay.COMPLETED, "attempts": 1, "intent_id": "pi_1", "gateway_reference": "pi_1"},
    ],
)
def test_no_intent_to_cancel_otherwise(state: dict[str, object]) -> None:
    assert pay.intent_to_void(payment(**state)) is None


def test_the_retry_delay_grows_exponentially_with_full_jitter() -> None:
    ceilings = [pay.charge_retry_delay(n, 10, 2.0, rand=lambda: 1.0) for n in range(1, 5)]
    assert ceilings == [2.0, 4.0, 8.0, 16.0]
    assert pay.charge_retry_delay(3, 10, 2.0, rand=lambda: 0.25) == 2.0
    assert pay.charge_retry_delay(3, 10, 2.0, rand=lambda: 0.0) == 0.0


def test_the_retry_delay_is_capped() -> None:
    assert pay.charge_retry_delay(9, 20, 2.0, rand=lambda: 1.0) == pay.MAX_RETRY_DELAY_SECONDS


def test_no_retry_once_the_attempts_are_spent() -> None:
    assert pay.charge_retry_delay(8, 8, 2.0) is None
    assert pay.charge_retry_delay(7, 8, 2.0) is not None


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        (Decimal("12.34"), "USD", 1234),
        (Decimal("0.10"), "eur", 10),
        (Decimal("500"), "JPY", 500),
        (Decimal("9999999999.99"), "USD", 999999999999),
    ],
)
def test_amounts_go_to_the_gateway_in_minor_units(amount: Decimal, currency: str, minor: int) -> None:
    assert to_minor_units(amount, currency) == minor


def test_a_decline_reason_is_the_upper_cased_decline_code() -> None:
    assert PaymentDeclined("no", code="card_declined", decline_code="insufficient_funds").reason == (
        "INSUFFICIENT_FUNDS"
    )
    assert PaymentDeclined("no", code="expired_card").reason == "EXPIRED_CARD"
    assert GatewayRejected("bad", code="resource_missing").reason == "RESOURCE_MISSING"
