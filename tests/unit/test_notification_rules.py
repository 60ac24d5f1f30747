"""Notification rules without I/O: retry delays, attempts, templates and the e-mail message."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from app.adapters.email_templates import has_template, render_email, render_html, template_name
from app.adapters.mailer import OutgoingEmail, SmtpEndpoint, build_message
from app.domain.notifications import (
    MAX_RETRY_DELAY_SECONDS,
    N_FAILED,
    N_PENDING,
    N_SENT,
    Notification,
    retry_delay,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
CUSTOMER_EVENTS = [
    "OrderPlaced",
    "PaymentCompleted",
    "PaymentFailed",
    "OrderShipped",
    "OrderDelivered",
    "OrderCancelled",
    "PaymentRefunded",
    "ReturnRequested",
    "ReturnReceived",
    "ReturnRefunded",
]


def pending() -> Notification:
    return Notification(id=uuid.uuid4(), status=N_PENDING, attempts=0, recipient="a@example.com")


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5])
def test_retry_delay_is_exponential_with_jitter_in_the_upper_half(attempt):
    ceiling = 10 * 2 ** (attempt - 1)
    delays = {retry_delay(attempt, 10, random.Random(seed)) for seed in range(50)}
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(delays) > 1  # jittered


def test_retry_delay_is_capped():
    assert retry_delay(40, 10, random.Random(1)) <= MAX_RETRY_DELAY_SECONDS


def test_a_failure_schedules_the_next_attempt_until_the_last_one_fails_the_notification():
    n = pending()
    assert n.record_failure("refused", now=NOW, max_attempts=2, delay=30) is True
    assert (n.status, n.attempts, n.last_error) == (N_PENDING, 1, "refused")
    assert n.next_attempt_at == NOW + timedelta(seconds=30)
    assert n.record_failure("refused again", now=NOW, max_attempts=2, delay=60) is False
    assert (n.status, n.attempts, n.last_error, n.next_attempt_at) == (N_FAILED, 2, "refused again", None)


def test_a_new_round_resets_the_attempts_and_keeps_the_last_error():
    n = pending()
    n.record_failure("refused", now=NOW, max_attempts=1, delay=1)
    n.start_new_round(NOW)
    assert (n.status, n.attempts, n.last_error, n.next_attempt_at) == (N_PENDING, 0, "refused", NOW)


def test_sent_counts_the_attempt_and_clears_the_schedule():
    n = pending()
    n.mark_sent(NOW)
    assert (n.status, n.attempts, n.sent_at, n.next_attempt_at) == (N_SENT, 1, NOW, None)


def test_every_customer_facing_event_has_a_template():
    assert template_name("OrderPlaced") == "order_placed.txt"
    assert all(has_template(name) for name in CUSTOMER_EVENTS)


@pytest.mark.parametrize("event_name", CUSTOMER_EVENTS)
def test_each_template_renders_a_subject_and_a_body_about_the_order(event_name):
    order = {
        "id": "0190c0de-0000-7000-8000-00000000abcd",
        "reference": "0000ABCD",
        "currency": "USD",
        "total": "12.50",
        "lines": [{"name": "Tea", "quantity": 5, "subtotal": "12.50"}],
    }
    email = render_email(
        event_name,
        {
            "name": "Ann",
            "order": order,
            "reason": None,
            "payment_refund_pending": False,
            "shipment": {"carrier": None, "tracking_number": None, "tracking_url": None, "lines": []},
            "ret": {"id": "0190c0de-0000-7000-8000-00000000beef", "refund_amount": "2.50"},
        },
    )
    assert "0000ABCD" in email.subject and "\n" not in email.subject
    assert email.text.startswith("Hello Ann,")
    assert order["id"] in email.text and "5 x Tea: 12.50 USD" in email.text
    if event_name.startswith("Return"):
        assert "0190c0de-0000-7000-8000-00000000beef" in email.text and "2.50 USD" in email.text


def test_a_shipment_e_mail_names_its_carrier_tracking_and_lines():
    order = {"id": "o-1", "reference": "0000ABCD", "currency": "USD", "total": "12.50", "lines": []}
    shipment = {
        "carrier": "UPS",
        "tracking_number": "1Z999",
        "tracking_url": "https://ups.example/1Z999",
        "lines": [{"name": "Tea", "quantity": 2}],
    }
    email = render_email(
        "OrderShipped",
        {
            "name": "Ann",
            "order": order,
            "reason": None,
            "payment_refund_pending": False,
            "shipment": shipment,
        },
    )
    assert "part of your order is on its way" in email.text
    assert "Carrier: UPS" in email.text and "Tracking number: 1Z999" in email.text
    assert "https://ups.example/1Z999" in email.text and "2 x Tea" in email.text


def test_an_admin_alert_without_an_order_says_what_it_is_about():
    empty = {"id": "", "reference": "", "currency": "", "total": "0.00", "lines": []}
    email = render_email(
        "AdminAlerted",
        {
            "name": "Admin",
            "order": empty,
            "reason": None,
            "payment_refund_pending": False,
            "alert": "ProductLowStock",
            "detail": "Lamp is low on stock: 3 left (threshold 5).",
            "amount": None,
            "payment_due_by": None,
        },
    )
    assert email.subject == "[OMS alert] ProductLowStock"
    assert "Lamp is low on stock: 3 left" in email.text and "Order" not in email.text


def test_the_html_part_escapes_the_text():
    html = render_html("Hi", "Hello <b>Ann</b>,\n\nline one\nline two", "n-1")
    assert "&lt;b&gt;Ann&lt;/b&gt;" in html and "<b>Ann" not in html
    assert "line one<br>line two" in html


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://127.0.0.1:8025", SmtpEndpoint("127.0.0.1", 8025)),
        ("smtp://mail.example.com", SmtpEndpoint("mail.example.com", 25)),
        ("smtp://mail.example.com:587?starttls=true", SmtpEndpoint("mail.example.com", 587, starttls=True)),
        (
            "smtps://u%40x:p%3Aw@mail.example.com",
            SmtpEndpoint("mail.example.com", 465, True, False, "u@x", "p:w"),
        ),
    ],
)
def test_smtp_urls(url, expected):
    assert SmtpEndpoint.from_url(url) == expected


@pytest.mark.parametrize("url", ["http://example.com", "smtp://", "mail.example.com:25"])
def test_an_smtp_url_that_is_not_one_is_rejected(url):
    with pytest.raises(ValueError):
        SmtpEndpoint.from_url(url)


def test_the_message_is_multipart_plain_and_html_with_a_message_id_from_the_notification():
    email = OutgoingEmail(
        message_id="n-42", recipient="ann@example.com", subject="Hi", text="plain", html="<p>x</p>"
    )
    message = build_message(email, "OMS <no-reply@shop.example>")
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert message["Message-ID"] == "<n-42@shop.example>"
    assert (message["To"], message["From"], message["Subject"]) == (
        "ann@example.com",
        "OMS <no-reply@shop.example>",
        "Hi",
    )
