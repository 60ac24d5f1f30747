"""A second beat stands by: the leader lock in Redis lets one beat schedule at a time."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from pathlib import Path

import redis

from app.adapters.beat import LEADER_KEY, STANDBY_CHECK_SECONDS, LeaderLock, SingleBeatScheduler


def a_key() -> str:
    return f"test:beat-leader:{uuid.uuid4().hex}"


def test_one_holder_at_a_time_and_the_holder_renews(redis_url: str):
    client = redis.Redis.from_url(redis_url)
    key = a_key()
    first, second = LeaderLock(client, key), LeaderLock(client, key)
    assert first.hold() is True
    assert second.hold() is False
    assert first.hold() is True


def test_a_released_lock_passes_to_the_standby(redis_url: str):
    client = redis.Redis.from_url(redis_url)
    key = a_key()
    first, second = LeaderLock(client, key), LeaderLock(client, key)
    first.hold()
    first.release()
    assert second.hold() is True
    first.release()  # no longer its lock: the standby keeps it
    assert first.hold() is False


def test_the_lock_of_a_beat_that_died_expires_and_passes_on(redis_url: str):
    client = redis.Redis.from_url(redis_url)
    key = a_key()
    dead, standby = LeaderLock(client, key, ttl=0.3), LeaderLock(client, key, ttl=0.3)
    assert dead.hold() is True
    deadline = time.monotonic() + 10
    while not standby.hold():
        assert time.monotonic() < deadline, "the lock never expired"
        time.sleep(0.05)
    assert dead.hold() is False


def test_without_redis_no_beat_leads():
    unreachable = redis.Redis(host="127.0.0.1", port=9, socket_connect_timeout=0.2, socket_timeout=0.2)
    assert LeaderLock(unreachable, a_key()).hold() is False


def test_a_standby_scheduler_sends_nothing_until_the_leader_lets_go(app, tmp_path: Path):
    celery = app.extensions["celery"]
    client = redis.Redis.from_url(app.config["REDIS_URL"])
    leader = LeaderLock(client, LEADER_KEY)
    assert leader.hold()
    sent: list[str] = []
    scheduler = SingleBeatScheduler(app=celery, schedule_filename=str(tmp_path / "schedule"))
    scheduler.apply_entry = lambda entry, producer=None: sent.append(entry.name)  # type: ignore[method-assign]
    try:
        for entry in scheduler.schedule.values():  # everything is due
            entry.last_run_at = entry.default_now() - timedelta(days=2)
        assert scheduler.tick() == STANDBY_CHECK_SECONDS
        assert sent == []
        assert scheduler.leading is False

        leader.release()
        scheduler.tick()
        assert scheduler.leading is True
        assert sent, "the new leader sends the due jobs"
    finally:
        scheduler.close()
    assert client.get(LEADER_KEY) is None, "a beat that stops lets the lock go"
