"""The payment's state machine (SPEC §5.3): every gateway outcome in every state — a late or
repeated event never moves a payment backwards — and disputes."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from app.domain import events
from app.domain import payments as pay

REF = pay.PaymentRef(uuid.uuid4(), uuid.uuid4(), uuid.uuid4())
ALL = tuple(pay.PaymentStatus)

OUTCOMES = {
    "succeeded": pay.completion(REF, "pi_1"),
    "payment_failed": pay.decline(REF, "CARD_DECLINED"),
    "requires_action": pay.waiting(REF, pay.REQUIRES_ACTION, "pi_1", "USE_STRIPE_SDK", "pi_1_secret"),
    "processing": pay.waiting(REF, pay.PROCESSING, "pi_1", None, None),
}
# Which states each outcome may move a payment out of (the guarded UPDATE's WHERE).
EXPECTED_FROM = {
    "succeeded": {pay.PENDING, pay.REQUIRES_ACTION, pay.PROCESSING},
    "payment_failed": {pay.PENDING, pay.REQUIRES_ACTION, pay.PROCESSING},
    "requires_action": {pay.PENDING},
    "processing": {pay.PENDING, pay.REQUIRES_ACTION},
}
TO = {
    "succeeded": pay.COMPLETED,
    "payment_failed": pay.FAILED,
    "requires_action": pay.REQUIRES_ACTION,
    "processing": pay.PROCESSING,
}


@pytest.mark.parametrize("outcome", sorted(OUTCOMES))
@pytest.mark.parametrize("status", ALL)
def test_every_outcome_in_every_state(outcome: str, status: str) -> None:
    transition = OUTCOMES[outcome]
    applies = status in transition.from_statuses
    assert applies == (status in EXPECTED_FROM[outcome])
    assert transition.values["status"] == TO[outcome]
    if applies:
        # Never backwards: nothing moves a payment out of a final state, nor to PENDING.
        assert status not in (pay.COMPLETED, pay.FAILED, pay.REFUNDED, pay.PARTIALLY_REFUNDED)


def test_a_repeated_outcome_is_a_no_op() -> None:
    for outcome, transition in OUTCOMES.items():
        if outcome != "processing":  # PROCESSING → PROCESSING is not in its own from-states either
            assert TO[outcome] not in transition.from_statuses or TO[outcome] == pay.PENDING
    assert pay.PROCESSING not in OUTCOMES["processing"].from_statuses


def test_the_events_of_the_outcomes() -> None:
    assert isinstance(OUTCOMES["succeeded"].event, events.PaymentCompleted)
    assert isinstance(OUTCOMES["payment_failed"].event, events.PaymentFailed)
    assert isinstance(OUTCOMES["requires_action"].event, events.PaymentActionRequired)
    assert OUTCOMES["requires_action"].values["client_secret"] == "pi_1_secret"
    assert OUTCOMES["succeeded"].values["client_secret"] is None  # the secret is forgotten when done


@pytest.mark.parametrize("status", ALL)
def test_only_a_pending_payment_is_charged_and_only_a_waiting_one_polled(status: str) -> None:
    payment = pay.Payment(status=status)
    expected = {pay.PENDING: pay.CHARGE, pay.REQUIRES_ACTION: pay.POLL, pay.PROCESSING: pay.POLL}
    assert pay.charge_step(payment, "PLACED") == expected.get(status, pay.SKIP)
    assert pay.charge_step(payment, "CANCELLED") == pay.SKIP


def test_the_retry_window_is_off_at_0_or_with_the_toggle_off() -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert pay.retry_due_by(now, 900, True) == now + timedelta(seconds=900)
    assert pay.retry_due_by(now, 0, True) is None
    assert pay.retry_due_by(now, 900, False) is None


def test_keys_are_new_for_every_round() -> None:
    pid = uuid.uuid4()
    assert pay.gateway_keys(pid, 1) == (f"intent-{pid}", f"confirm-{pid}")
    assert pay.gateway_keys(pid, 2) == (f"intent-{pid}-r2", f"confirm-{pid}-r2")


def dispute(payment: pay.Payment, status: str, reference: str = "du_1") -> events.Event | None:
    return pay.dispute_update(payment, REF, reference, status, "fraudulent", Decimal("7.50"))


def test_a_dispute_is_recorded_upper_case_and_closes_once() -> None:
    payment = pay.Payment(status=pay.COMPLETED)
    opened = dispute(payment, "needs_response")
    assert isinstance(opened, events.PaymentDisputed)
    assert payment.dispute == {"status": "NEEDS_RESPONSE", "reason": "FRAUDULENT", "amount": Decimal("7.50")}
    assert dispute(payment, "needs_response") is None  # repeated
    assert dispute(payment, "under_review") is None  # moves, no new e-mail
    assert payment.dispute_status == "UNDER_REVIEW"
    closed = dispute(payment, "lost")
    assert isinstance(closed, events.PaymentDisputeClosed) and closed.status == "LOST"
    assert dispute(payment, "needs_response") is None  # a late "created": never reopened
    assert payment.dispute_status == "LOST"
    assert dispute(payment, "won", reference="du_other") is None  # another dispute: the first is kept
