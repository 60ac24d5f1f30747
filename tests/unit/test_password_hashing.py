"""Password hashing runs at a bounded concurrency per process (SPEC §5.10), so a flood of sign-ups
or logins cannot take every core from the requests that need none."""

from __future__ import annotations

import threading
import time

import pytest

from app.adapters import passwords
from app.domain.errors import ServiceUnavailable


class CountingHasher:
    """Stands in for argon2 (a pure-logic test of the bound): records how many run at once."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self.lock = threading.Lock()

    def hash(self, password: str) -> str:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.05)
        with self.lock:
            self.running -= 1
        return "hashed"


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> CountingHasher:
    hasher = CountingHasher()
    monkeypatch.setattr(passwords, "_hasher", hasher)
    yield hasher
    passwords.limit_concurrency(1, 10.0)


def run_at_once(n: int, target) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def body() -> None:
        barrier.wait()
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_one_hash_at_a_time_by_default(counting: CountingHasher):
    passwords.limit_concurrency(1, 10.0)
    assert run_at_once(6, lambda: passwords.hash_password("pw")) == []
    assert counting.most == 1


def test_the_bound_is_a_setting(counting: CountingHasher):
    passwords.limit_concurrency(3, 10.0)
    assert run_at_once(9, lambda: passwords.hash_password("pw")) == []
    assert counting.most == 3


def test_a_request_that_waits_too_long_for_a_slot_is_503(counting: CountingHasher):
    passwords.limit_concurrency(1, 0.01)
    errors = run_at_once(4, lambda: passwords.hash_password("pw"))
    assert errors and all(isinstance(e, ServiceUnavailable) for e in errors)
    assert counting.most == 1
