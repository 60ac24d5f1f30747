"""Accounts through the real processes and a real SMTP server: the e-mailed tokens work, once.

Sign-up e-mails a verification token; a password reset e-mails a single-use token. Both are read
from the messages an SMTP server on loopback received — the only place they exist in clear. A
recipient the server refuses for good (550) fails at once and is never sent again by the beat job.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest

from app.adapters.queue import RETRY_FAILED_NOTIFICATIONS
from app.devtools.smtp_sink import ReceivedEmail, SmtpSink
from tests.e2e.conftest import Stack, wait_for
from tests.e2e.harness import ADDRESS, PASSWORD, ShopClient

pytestmark = pytest.mark.e2e

REFUSED = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
# The token is the line after "…within N minutes:" in both templates.
TOKEN_LINE = re.compile(r"minutes:\s*\n\s*\n?(\S+)\s*$", re.MULTILINE)


@pytest.fixture
def sink(stack: Stack) -> Iterator[SmtpSink]:
    with SmtpSink(port=stack.smtp_port, refuse={REFUSED: "550 5.1.1 No such mailbox"}) as server:
        yield server


@pytest.fixture
def shop(stack: Stack, sink: SmtpSink) -> ShopClient:
    stack.env.update(NOTIFY_RETRY_INTERVAL_SECONDS="1", NOTIFY_MAX_ATTEMPTS="3")
    stack.start_stack()
    return ShopClient(stack)


def _mail_to(sink: SmtpSink, address: str, subject_word: str) -> ReceivedEmail:
    def found() -> ReceivedEmail | None:
        for message in sink.received:
            if address in message.rcpt_tos and subject_word.lower() in message.subject.lower():
                return message
        return None

    result: ReceivedEmail = wait_for(found, 60, interval=0.2, what=f"an e-mail to {address}")
    return result


def _token(message: ReceivedEmail) -> str:
    match = TOKEN_LINE.search(message.body())
    assert match, message.body()
    return match.group(1)


def _sign_up(shop: ShopClient, email: str) -> str:
    created = shop.request(
        "POST", "/users", json={"name": "Ada", "email": email, "password": PASSWORD, "address": ADDRESS}
    )
    assert created.status_code == 201, created.text
    return str(created.json()["userId"])


def _login(shop: ShopClient, email: str, password: str) -> int:
    return shop.request("POST", "/auth/token", json={"email": email, "password": password}).status_code


def test_the_emailed_verification_token_verifies_the_address_once(shop: ShopClient, sink: SmtpSink):
    email = f"ada-{uuid.uuid4().hex[:8]}@example.com"
    user_id = _sign_up(shop, email)
    token = _token(_mail_to(sink, email, "confirm"))

    assert shop.request("POST", "/auth/verify-email", json={"token": token}).status_code == 204
    assert shop.request("POST", "/auth/verify-email", json={"token": token}).status_code == 400
    access = shop.request("POST", "/auth/token", json={"email": email, "password": PASSWORD})
    profile = shop.request("GET", f"/users/{user_id}", access.json()["accessToken"]).json()
    assert profile["emailVerified"] is True


def test_a_password_reset_through_the_real_smtp_server(shop: ShopClient, sink: SmtpSink):
    email = f"grace-{uuid.uuid4().hex[:8]}@example.com"
    user_id = _sign_up(shop, email)
    old = shop.request("POST", "/auth/token", json={"email": email, "password": PASSWORD})
    old_token = old.json()["accessToken"]

    asked = shop.request("POST", "/auth/password-reset", json={"email": email})
    assert asked.status_code == 202
    message = _mail_to(sink, email, "password")
    secret = _token(message)
    # The secret is in the e-mail only: not in the notification an admin or the user can read.
    listed = shop.request("GET", f"/users/{user_id}/notifications", old_token).json()["items"]
    assert listed and all(secret not in str(n) for n in listed)

    new_password = "a brand new passphrase"
    confirm = {"token": secret, "password": new_password}
    assert shop.request("POST", "/auth/password-reset/confirm", json=confirm).status_code == 204
    assert shop.request("GET", f"/users/{user_id}", old_token).status_code == 401
    assert _login(shop, email, PASSWORD) == 401
    assert _login(shop, email, new_password) == 200
    reused = {**confirm, "password": "yet another one!"}
    again = shop.request("POST", "/auth/password-reset/confirm", json=reused)
    assert again.status_code == 400
    assert again.headers["Content-Type"].startswith("application/problem+json")
    assert _login(shop, email, new_password) == 200


def test_a_recipient_refused_with_550_fails_once_and_stays_failed(
    stack: Stack, shop: ShopClient, sink: SmtpSink
):
    user_id = _sign_up(shop, REFUSED)
    token = shop.request("POST", "/auth/token", json={"email": REFUSED, "password": PASSWORD}).json()[
        "accessToken"
    ]

    def failed() -> dict[str, object] | None:
        items = shop.request("GET", f"/users/{user_id}/notifications", token).json()["items"]
        return next((n for n in items if n["status"] == "FAILED"), None)

    notification = wait_for(failed, 60, interval=0.2, what="the bounced notification FAILED")
    assert notification["permanentFailure"] is True
    assert "550" in str(notification["lastError"])
    assert len(notification["deliveries"]) == 1  # type: ignore[arg-type]

    # The beat job re-queues FAILED notifications every second here; a permanent one is not among
    # them. Wait until the worker has run that job twice more, then look again.
    def job_runs() -> int:
        return stack.log("worker").count(f"{RETRY_FAILED_NOTIFICATIONS}[")

    seen = job_runs()
    wait_for(lambda: job_runs() >= seen + 2, 30, interval=0.2, what="two more runs of the retry job")
    items = shop.request("GET", f"/users/{user_id}/notifications", token).json()["items"]
    again = next(n for n in items if n["notificationId"] == notification["notificationId"])
    assert again["status"] == "FAILED"
    assert len(again["deliveries"]) == 1
    assert not any(REFUSED in m.rcpt_tos for m in sink.received)
