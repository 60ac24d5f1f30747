"""Concurrent sign-ups with one email: the unique index lets exactly one win, the rest get DuplicateEmail."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from app.domain.errors import DuplicateEmail
from app.domain.users import User
from app.extensions import db
from app.services.users import register_user

ADDRESS = {"line1": "1 Main St", "city": "Springfield", "postalCode": "12345", "country": "US"}


def test_concurrent_sign_ups_with_one_email_create_one_account(app):
    emails = ["race@example.com", "RACE@example.com", "Race@Example.com", "race@EXAMPLE.COM"]
    start = threading.Barrier(len(emails))
    outcomes: list[str] = []
    lock = threading.Lock()

    def sign_up(email: str) -> None:
        with app.app_context():
            start.wait()
            try:
                register_user("Racer", email, "long-enough-password", ADDRESS)
                outcome = "created"
            except DuplicateEmail:
                outcome = "duplicate"
            except Exception as exc:  # recorded, so the assertion shows it
                outcome = f"error: {type(exc).__name__}: {exc}"
            finally:
                db.session.remove()
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=sign_up, args=(email,)) for email in emails]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["created"] + ["duplicate"] * (len(emails) - 1)
    with app.app_context():
        count = db.session.scalar(
            select(func.count()).select_from(User).where(func.lower(User.email) == "race@example.com")
        )
        assert count == 1
