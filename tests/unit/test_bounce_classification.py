"""Bounce classification (SMTP 5xx is permanent; 4xx and connection errors are transient) and the
per-attempt history a notification keeps."""

from __future__ import annotations

import smtplib
from datetime import UTC, datetime, timedelta

import pytest

from app.adapters.mailer import is_bounce
from app.domain.notifications import N_FAILED, N_PENDING, N_SENT, Notification, is_permanent_smtp_code

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("code", "permanent"),
    [
        (550, True),
        (554, True),
        (500, True),
        (599, True),
        (421, False),
        (450, False),
        (452, False),
        (250, False),
        (None, False),
    ],
)
def test_only_5xx_replies_are_permanent(code, permanent):
    assert is_permanent_smtp_code(code) is permanent


def test_a_refused_recipient_is_a_bounce_only_when_every_code_is_5xx():
    assert is_bounce(smtplib.SMTPRecipientsRefused({"a@example.com": (550, b"5.1.1 No such mailbox")}))
    assert not is_bounce(smtplib.SMTPRecipientsRefused({"a@example.com": (450, b"4.2.0 Greylisted")}))
    assert not is_bounce(
        smtplib.SMTPRecipientsRefused({"a@example.com": (550, b"no"), "b@example.com": (451, b"later")})
    )


@pytest.mark.parametrize(
    ("exc", "bounce"),
    [
        (smtplib.SMTPDataError(554, b"5.7.1 Rejected as spam"), True),
        (smtplib.SMTPSenderRefused(553, b"5.1.8 Bad sender", "no-reply@oms.local"), True),
        (smtplib.SMTPDataError(451, b"4.3.0 Try again"), False),
        (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), False),
        (ConnectionRefusedError(111, "Connection refused"), False),
        (TimeoutError("timed out"), False),
    ],
)
def test_transient_and_connection_errors_are_not_bounces(exc, bounce):
    assert is_bounce(exc) is bounce


def fresh() -> Notification:
    return Notification(status=N_PENDING, attempts=0, deliveries=[], permanent_failure=False)


def test_every_attempt_is_kept_across_rounds():
    n = fresh()
    assert n.record_failure("421 busy", now=NOW, max_attempts=2, delay=1.0)
    assert not n.record_failure("timed out", now=NOW + timedelta(seconds=1), max_attempts=2, delay=1.0)
    assert n.status == N_FAILED
    n.start_new_round(NOW + timedelta(minutes=10))
    assert n.attempts == 0
    n.mark_sent(NOW + timedelta(minutes=10, seconds=1))
    assert n.status == N_SENT
    assert [d["error"] for d in n.deliveries] == ["421 busy", "timed out", None]
    assert n.deliveries[0]["at"] == NOW.isoformat()


def test_a_rejection_fails_at_once_and_for_good():
    n = fresh()
    n.record_rejection("SMTPRecipientsRefused: 550 No such mailbox", now=NOW)
    assert (n.status, n.attempts, n.permanent_failure, n.next_attempt_at) == (N_FAILED, 1, True, None)
    assert n.deliveries == [{"at": NOW.isoformat(), "error": "SMTPRecipientsRefused: 550 No such mailbox"}]
