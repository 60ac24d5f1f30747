"""SIGTERM, as Heroku sends it to every process of a dyno: web drains, the worker shuts down warm.

A request or a task is made slow for real by holding a Postgres lock it needs from the test (the
stack's lock_timeout is raised above the hold), so nothing in the product has a debug hook.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import requests

from tests.e2e.conftest import ROOT, Stack, wait_for

# Heroku sends SIGKILL 30 s after SIGTERM.
HEROKU_SHUTDOWN_WINDOW_SECONDS = 30


@pytest.fixture
def patient_stack(stack: Stack) -> Stack:
    """Requests and tasks wait on locks the test holds instead of failing after 5 s."""
    stack.env.update(DB_LOCK_TIMEOUT_MS="120000", DB_STATEMENT_TIMEOUT_MS="120000")
    return stack


@contextlib.contextmanager
def table_locked(database_url: str, table: str) -> Iterator[psycopg.Connection[Any]]:
    """ACCESS EXCLUSIVE on ``table`` until the block ends: any query on it waits."""
    with psycopg.connect(database_url) as conn:
        conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        yield conn
        conn.commit()


def waiting_on_a_lock(database_url: str, table: str) -> bool:
    """Another session of this database is blocked on a lock, running a query on ``table``."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock' AND query ILIKE %s",
            (f"%{table}%",),
        ).fetchone()
    return bool(row and row[0])


def refused_or_not_ready(stack: Stack) -> bool:
    try:
        return requests.get(stack.url("/readyz"), timeout=2).status_code == 503
    except requests.ConnectionError:
        return True


def test_sigterm_lets_the_in_flight_request_finish_and_exits_0(patient_stack: Stack):
    stack = patient_stack
    web = stack.start("web")
    stack.wait_web()
    responses: list[requests.Response] = []

    with table_locked(stack.database_url, "products"):
        slow = threading.Thread(
            target=lambda: responses.append(requests.get(stack.url("/products?page=1"), timeout=60))
        )
        slow.start()
        wait_for(lambda: waiting_on_a_lock(stack.database_url, "products"), 20, what="request in flight")

        stack.signal("web", signal.SIGTERM)  # to the whole process group, as Heroku does

        wait_for(lambda: refused_or_not_ready(stack), 15, what="web stops taking new work")
        assert slow.is_alive(), "the in-flight request is still being served"
        assert web.poll() is None, "gunicorn waits for it"
    # The lock is released: the request completes.

    slow.join(timeout=HEROKU_SHUTDOWN_WINDOW_SECONDS)
    assert [r.status_code for r in responses] == [200]
    assert responses[0].json()["items"] == []
    assert web.wait(timeout=HEROKU_SHUTDOWN_WINDOW_SECONDS) == 0
    assert any(line.get("event") == "draining" for line in json_lines(stack.log("web")))


def json_lines(log: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def relay_outbox(stack: Stack) -> None:
    """Publish unpublished outbox events, as the web process does right after its commit."""
    subprocess.run(
        ["flask", "--app", "app", "relay-outbox"],
        cwd=ROOT, env=stack.env, check=True, capture_output=True, timeout=60,
    )  # fmt: skip


def processed(database_url: str, message_id: int) -> bool:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT processed_at FROM outbox WHERE id = %s", (message_id,)).fetchone()
    return row is not None and row[0] is not None


def outbox_event(database_url: str) -> int:
    """A committed OrderDelivered event for a real customer, not yet published."""
    user_id = uuid.uuid4()
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO users (id, email, name, password_hash, address, role, created_at, updated_at) "
            "VALUES (%s, %s, 'Warm Shutdown', 'x', '{}'::jsonb, 'customer', now(), now())",
            (user_id, f"warm-{user_id.hex[:8]}@example.com"),
        )
        payload = {"order_id": str(uuid.uuid4()), "user_id": str(user_id)}
        (message_id,) = conn.execute(
            "INSERT INTO outbox (event_type, payload, request_id, created_at) "
            "VALUES ('OrderDelivered', %s, 'e2e-warm-shutdown', now()) RETURNING id",
            (json.dumps(payload),),
        ).fetchone()  # type: ignore[misc]
    return int(message_id)


def test_sigterm_to_the_worker_mid_task_finishes_it_once(patient_stack: Stack):
    """Warm shutdown: the running task completes and is acked; a restart does not run it again."""
    stack = patient_stack
    stack.start("worker")
    stack.wait_worker()
    message_id = outbox_event(stack.database_url)

    with table_locked(stack.database_url, "notifications"):
        relay_outbox(stack)  # its handler blocks on the lock
        wait_for(lambda: waiting_on_a_lock(stack.database_url, "notifications"), 30, what="task running")

        stack.signal("worker", signal.SIGTERM)  # to every process of the worker, pool children too

        wait_for(lambda: "Warm shutdown" in stack.log("worker"), 15, what="warm shutdown")
        assert stack.processes["worker"].poll() is None, "the worker waits for its running task"
    # The lock is released: the task finishes inside the shutdown window.

    assert stack.processes["worker"].wait(timeout=HEROKU_SHUTDOWN_WINDOW_SECONDS) == 0
    handled = [e for e in json_lines(stack.log("worker")) if e.get("outbox_id") == message_id]
    assert [e["event"] for e in handled] == ["event_handled"], "finished by the worker told to stop"
    task_id = handled[0]["task_id"]

    # After a restart, and once a later event went through, the first task has not run again.
    stack.processes.pop("worker")
    stack.start("worker")
    stack.wait_worker(occurrence=2)
    later = outbox_event(stack.database_url)
    relay_outbox(stack)
    wait_for(lambda: processed(stack.database_url, later), 30, what="a later event handled")

    runs = [
        e
        for e in json_lines(stack.log("worker"))
        if e.get("task_id") == task_id and e["event"] == "task_started"
    ]
    assert len(runs) == 1
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        count = conn.execute(
            "SELECT count(*) FROM notifications WHERE event_id = %s", (message_id,)
        ).fetchone()
    assert count == (1,)
    assert processed(stack.database_url, message_id)
