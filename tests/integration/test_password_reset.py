"""Password reset for real: the token travels outbox → handler → delivery task → SMTP, its secret is
in the e-mail only, and of two concurrent confirmations exactly one wins (Postgres row lock)."""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import pytest
from flask import current_app
from sqlalchemy import select, text

from app.adapters import queue
from app.devtools.services import free_port
from app.devtools.smtp_sink import SmtpSink
from app.domain.accounts import PURPOSE_PASSWORD_RESET, TOKEN_MASK, AccountToken, token_digest
from app.domain.errors import InvalidToken
from app.domain.notifications import N_SENT, Notification
from app.domain.outbox import OutboxMessage
from app.extensions import db
from app.services import dispatch
from app.services.handlers import EVENT_HANDLERS
from app.services.unit_of_work import UnitOfWork
from app.services.users import confirm_password_reset, request_password_reset
from tests.tasks import run_task

NEW_PASSWORD = "a brand new password"


@pytest.fixture(autouse=True)
def _queue_breaker_closed():
    queue.publish_breaker.close()
    yield
    queue.publish_breaker.close()


@pytest.fixture
def smtp(app, monkeypatch) -> Any:
    sink = SmtpSink("127.0.0.1", free_port()).start()
    monkeypatch.setitem(app.config, "SMTP_URL", sink.url)
    monkeypatch.setitem(app.config, "SMTP_TIMEOUT_SECONDS", 2.0)
    yield sink
    sink.stop()


def reset_and_deliver(app, email: str) -> Notification:
    """Ask for a reset as the API does, then run the event's handlers and the delivery task."""
    request_password_reset(email, secret_key=app.config["SECRET_KEY"], ttl_seconds=3600)
    (message_id,) = db.session.scalars(
        select(OutboxMessage.id).where(OutboxMessage.event_type == "PasswordResetRequested")
    )
    dispatch.handle_message(message_id, EVENT_HANDLERS)
    db.session.expire_all()
    (notification,) = db.session.scalars(select(Notification))
    run_task(current_app._get_current_object(), queue.DELIVER_NOTIFICATION, str(notification.id))
    db.session.expire_all()
    return db.session.get(Notification, notification.id)


def secret_in(body: str) -> str:
    match = re.search(r"^([0-9a-f-]{36}\.[A-Za-z0-9_-]+)\r?$", body, re.MULTILINE)
    assert match, body
    return match.group(1)


def test_the_secret_is_in_the_email_only(app, app_ctx, client, customer, token_for, admin, smtp):
    notification = reset_and_deliver(app, customer.email)

    (mail,) = smtp.received
    assert mail.rcpt_tos == [customer.email]
    assert mail.subject == "Reset your password"
    secret = secret_in(mail.body("plain"))
    assert secret in mail.body("html")
    assert TOKEN_MASK not in mail.body("plain")
    # Stored: the digest, and the body with the secret masked.
    (token,) = db.session.scalars(select(AccountToken))
    assert token.token_hash == token_digest(secret)
    assert notification.status == N_SENT
    assert TOKEN_MASK in notification.message and secret not in notification.message
    # Nor does any API response an admin or the owner can read show it.
    for caller in (customer, admin):
        listing = client.get(f"/users/{customer.id}/notifications", headers=token_for(caller))
        assert listing.status_code == 200
        assert secret not in listing.get_data(as_text=True)
        assert TOKEN_MASK in listing.get_data(as_text=True)

    # And the e-mailed secret is the one that works.
    db.session.remove()
    confirm_password_reset(secret, NEW_PASSWORD)
    assert (
        client.post("/auth/token", json={"email": customer.email, "password": NEW_PASSWORD}).status_code
        == 200
    )


def test_without_a_signing_key_the_token_email_fails_instead_of_leaking(
    app, app_ctx, customer, smtp, monkeypatch
):
    monkeypatch.setitem(app.config, "SECRET_KEY", "")
    request_password_reset(customer.email, secret_key="k" * 40, ttl_seconds=3600)
    (message_id,) = db.session.scalars(select(OutboxMessage.id))
    dispatch.handle_message(message_id, EVENT_HANDLERS)
    db.session.expire_all()
    (notification,) = db.session.scalars(select(Notification))
    assert run_task(app, queue.DELIVER_NOTIFICATION, str(notification.id)) == "FAILED"
    assert smtp.received == []


def _one_token(app, customer) -> str:
    from app.domain.accounts import token_secret

    request_password_reset(customer.email, secret_key=app.config["SECRET_KEY"], ttl_seconds=3600)
    (token,) = db.session.scalars(select(AccountToken))
    db.session.remove()
    return token_secret(app.config["SECRET_KEY"], PURPOSE_PASSWORD_RESET, token.id)


def test_concurrent_confirmations_one_wins(app, app_ctx, customer):
    secret = _one_token(app, customer)
    start = threading.Barrier(4)
    outcomes: list[str] = []
    lock = threading.Lock()

    def confirm(n: int) -> None:
        with app.app_context():
            start.wait()
            try:
                confirm_password_reset(secret, f"{NEW_PASSWORD}-{n}")
                outcome = "won"
            except InvalidToken:
                outcome = "refused"
            except Exception as exc:
                outcome = f"error: {type(exc).__name__}: {exc}"
            finally:
                db.session.remove()
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=confirm, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["refused", "refused", "refused", "won"]


def test_a_second_consumer_waits_for_the_first_and_then_finds_the_token_used(app, app_ctx, customer):
    """The race itself, made deterministic: the first consumer holds the row (uncommitted) while
    the second's UPDATE waits on it; once the first commits, the second finds nothing."""
    digest = token_digest(_one_token(app, customer))
    second: list[Any] = []

    with UnitOfWork() as first:
        assert first.account_tokens.consume(digest, PURPOSE_PASSWORD_RESET) == customer.id

        def consume_too() -> None:
            with app.app_context(), UnitOfWork() as uow:
                second.append(uow.account_tokens.consume(digest, PURPOSE_PASSWORD_RESET))
                uow.commit()
                db.session.remove()

        thread = threading.Thread(target=consume_too)
        thread.start()
        deadline = time.monotonic() + 20
        waiting = 0
        while time.monotonic() < deadline and not waiting:
            with app.app_context():
                waiting = db.session.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock' AND query LIKE 'UPDATE account_tokens%'"
                    )
                )
                db.session.remove()
            time.sleep(0.05)
        assert waiting, "the second consumer never waited on the row lock"
        first.commit()
    thread.join(timeout=20)
    assert second == [None]
