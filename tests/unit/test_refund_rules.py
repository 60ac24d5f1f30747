"""Partial refunds: how much a refund may take, how the gateway's word moves a refund (monotonic,
but a refund may fail after it succeeded), and the payment's status from its refunds."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from app.domain import events
from app.domain import payments as pay
from app.domain.errors import InvalidTransition, ValidationFailed


def refund(amount: str, status: str = pay.R_PENDING) -> pay.Refund:
    return pay.Refund(id=uuid.uuid4(), amount=Decimal(amount), status=status)


def payment(*refunds: pay.Refund, status: str = pay.COMPLETED, **fields: object) -> pay.Payment:
    values: dict[str, object] = {
        "id": uuid.uuid4(),
        "order_id": uuid.uuid4(),
        "amount": Decimal("100.00"),
        "currency": "USD",
        "status": status,
        "gateway_reference": "pi_1",
        "failure_reason": None,
    }
    values.update(fields)
    made = pay.Payment(**values)
    made.refunds = list(refunds)
    return made


def test_the_default_amount_is_all_that_is_still_refundable() -> None:
    taken = payment(
        refund("30.00", pay.R_SUCCEEDED), refund("20.00", pay.R_PENDING), refund("50", pay.R_FAILED)
    )
    assert taken.refundable_amount == Decimal("50.00")
    assert pay.refund_amount(taken, None) == Decimal("50.00")
    assert pay.refund_amount(taken, Decimal("50.00")) == Decimal("50.00")
    assert pay.refund_amount(taken, Decimal("0.01")) == Decimal("0.01")


def test_more_than_is_refundable_is_a_conflict() -> None:
    with pytest.raises(InvalidTransition):
        pay.refund_amount(payment(refund("60.00", pay.R_SUCCEEDED)), Decimal("40.01"))


@pytest.mark.parametrize("amount", ["0", "-1", "0.001"])
def test_an_amount_that_is_not_positive_cents_is_invalid(amount: str) -> None:
    with pytest.raises(ValidationFailed):
        pay.refund_amount(payment(), Decimal(amount))


def test_a_fully_refunded_payment_has_nothing_left() -> None:
    with pytest.raises(InvalidTransition):
        pay.refund_amount(payment(refund("100.00", pay.R_SUCCEEDED), status=pay.REFUNDED), None)


@pytest.mark.parametrize(
    "fields",
    [
        {"status": pay.PENDING, "gateway_reference": None},
        {"status": pay.FAILED, "gateway_reference": None, "failure_reason": "CARD_DECLINED"},
        {"status": pay.REQUIRES_ACTION, "gateway_reference": None},
        {"status": pay.PROCESSING, "gateway_reference": None},
    ],
)
def test_a_payment_that_took_no_money_cannot_be_refunded(fields: dict[str, object]) -> None:
    with pytest.raises(InvalidTransition):
        pay.refund_amount(payment(**fields), None)  # type: ignore[arg-type]


def test_a_voided_payment_charged_after_all_can_be_refunded() -> None:
    late = payment(status=pay.FAILED, failure_reason="ORDER_CANCELLED", gateway_reference="pi_9")
    assert pay.refund_amount(late, None) == Decimal("100.00")


@pytest.mark.parametrize(
    ("current", "reported", "expected"),
    [
        (pay.R_PENDING, pay.R_PENDING, None),
        (pay.R_PENDING, pay.R_SUCCEEDED, pay.R_SUCCEEDED),
        (pay.R_PENDING, pay.R_FAILED, pay.R_FAILED),
        (pay.R_SUCCEEDED, pay.R_SUCCEEDED, None),  # repeated
        (pay.R_SUCCEEDED, pay.R_PENDING, None),  # late: never backwards
        (pay.R_SUCCEEDED, pay.R_FAILED, pay.R_FAILED),  # the one way back: failed after success
        (pay.R_FAILED, pay.R_SUCCEEDED, None),
        (pay.R_FAILED, pay.R_PENDING, None),
        (pay.R_FAILED, pay.R_FAILED, None),
    ],
)
def test_a_refund_moves_only_forward_but_may_fail_after_success(
    current: str, reported: str, expected: str | None
) -> None:
    assert pay.refund_step(current, reported) == expected


@pytest.mark.parametrize(
    ("gateway", "ours"),
    [
        ("pending", "PENDING"),
        ("requires_action", "PENDING"),
        ("succeeded", "SUCCEEDED"),
        ("failed", "FAILED"),
        ("canceled", "FAILED"),
    ],
)
def test_the_gateway_refund_statuses_map_to_ours(gateway: str, ours: str) -> None:
    assert pay.GATEWAY_REFUND_STATUSES[gateway] == ours


def test_the_payment_status_follows_its_succeeded_refunds() -> None:
    assert pay.status_after_refunds(payment(refund("10.00", pay.R_PENDING))) == pay.COMPLETED
    assert pay.status_after_refunds(payment(refund("10.00", pay.R_SUCCEEDED))) == pay.PARTIALLY_REFUNDED
    both = payment(refund("10.00", pay.R_SUCCEEDED), refund("90.00", pay.R_SUCCEEDED))
    assert both.refunded_amount == Decimal("100.00")
    assert pay.status_after_refunds(both) == pay.REFUNDED
    # A refund failing after success stops counting: back to PARTIALLY_REFUNDED, or COMPLETED.
    failed_later = payment(
        refund("10.00", pay.R_SUCCEEDED), refund("90.00", pay.R_FAILED), status=pay.REFUNDED
    )
    assert pay.status_after_refunds(failed_later) == pay.PARTIALLY_REFUNDED
    none_left = payment(refund("100.00", pay.R_FAILED), status=pay.REFUNDED)
    assert pay.status_after_refunds(none_left) == pay.COMPLETED


def test_a_voided_payment_charged_late_is_refunded_or_stays_failed() -> None:
    late = {"status": pay.FAILED, "failure_reason": "ORDER_CANCELLED", "gateway_reference": "pi_2"}
    assert pay.status_after_refunds(payment(refund("100.00", pay.R_SUCCEEDED), **late)) == pay.REFUNDED
    assert pay.status_after_refunds(payment(refund("100.00", pay.R_FAILED), **late)) == pay.FAILED


def test_settling_a_refund_says_what_happened() -> None:
    ref = pay.PaymentRef(uuid.uuid4(), uuid.uuid4(), uuid.uuid4())
    partial = refund("10.00", pay.R_SUCCEEDED)
    said = pay.refund_events(ref, partial, pay.COMPLETED, pay.PARTIALLY_REFUNDED, Decimal("10.00"))
    assert [type(e) for e in said] == [events.RefundSucceeded, events.PaymentPartiallyRefunded]
    full = refund("90.00", pay.R_SUCCEEDED)
    said = pay.refund_events(ref, full, pay.PARTIALLY_REFUNDED, pay.REFUNDED, Decimal("100.00"))
    assert [type(e) for e in said] == [events.RefundSucceeded, events.PaymentRefunded]
    failed = refund("90.00", pay.R_FAILED)
    failed.failure_reason = "EXPIRED_OR_CANCELED_CARD"
    said = pay.refund_events(ref, failed, pay.REFUNDED, pay.PARTIALLY_REFUNDED, Decimal("10.00"))
    assert [type(e) for e in said] == [events.RefundFailed]
    assert isinstance(said[0], events.RefundFailed) and said[0].reason == "EXPIRED_OR_CANCELED_CARD"
