"""Password hashing with argon2id (argon2-cffi), at a bounded concurrency per process."""

from __future__ import annotations

import threading

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from app.domain.errors import ServiceUnavailable

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters

# Verified against when the email is unknown, so that response time does not reveal it.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


class HashingSlots:
    """How many argon2 computations may run at once in this process.

    argon2 is CPU- and memory-hard on purpose and releases the GIL while it runs, so every request
    thread hashing at once would take every core from the requests that need none (a sign-up flood
    made /healthz 100x slower). The others wait for a slot, up to ``wait_seconds``, then get a 503.
    """

    def __init__(self, concurrency: int = 1, wait_seconds: float = 10.0) -> None:
        self.configure(concurrency, wait_seconds)

    def configure(self, concurrency: int, wait_seconds: float) -> None:
        self.concurrency = max(1, concurrency)
        self.wait_seconds = wait_seconds
        self._slots = threading.BoundedSemaphore(self.concurrency)

    def __enter__(self) -> None:
        if not self._slots.acquire(timeout=self.wait_seconds):
            raise ServiceUnavailable("Too many password checks at once: try again shortly", retry_after=5)

    def __exit__(self, *exc: object) -> None:
        self._slots.release()


slots = HashingSlots()


def limit_concurrency(concurrency: int, wait_seconds: float) -> None:
    """Set the per-process bound (``PASSWORD_HASH_CONCURRENCY``), from ``create_app``."""
    slots.configure(concurrency, wait_seconds)


def hash_password(password: str) -> str:
    with slots:
        return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    with slots:
        try:
            return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
        except (VerificationError, InvalidHashError):
            return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
