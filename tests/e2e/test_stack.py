"""The Procfile's web, worker and beat run together under honcho and serve the API."""

import json

import psycopg
import requests

from tests.e2e.conftest import Stack, wait_for


def test_procfile_processes_start_and_serve(stack: Stack):
    stack.start_honcho(("web", "worker", "beat"))
    stack.wait_web()
    stack.wait_worker(log_name="honcho")

    ready = requests.get(stack.url("/readyz"), headers={"X-Request-ID": "e2e-ready-1"}, timeout=5)
    assert ready.status_code == 200
    assert ready.headers["X-Request-ID"] == "e2e-ready-1"
    assert ready.json()["redis"]["status"] == "ok"
    assert requests.get(stack.url("/docs"), timeout=5).status_code == 200
    assert "/readyz" in requests.get(stack.url("/openapi.json"), timeout=5).json()["paths"]

    # Every line the processes print is a JSON object; request lines carry the request id.
    lines = [line.split("|", 1)[-1].strip() for line in stack.log("honcho").splitlines()]
    web_lines = [json.loads(line) for line in lines if line.startswith("{")]
    assert any(entry.get("request_id") == "e2e-ready-1" for entry in web_lines)


def test_outbox_message_is_relayed_by_beat_and_handled_by_the_worker(stack: Stack):
    """A message committed while nothing published it is delivered by the beat relay."""
    stack.start_honcho(("web", "worker", "beat"))
    stack.wait_web()
    stack.wait_worker(log_name="honcho")
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        (message_id,) = conn.execute(
            "INSERT INTO outbox (event_type, payload, request_id, created_at) "
            "VALUES ('OrderDelivered', %s, 'e2e-outbox-1', now()) RETURNING id",
            (json.dumps({"order_id": "00000000-0000-0000-0000-000000000000", "user_id": "x"}),),
        ).fetchone()

    def processed() -> bool:
        with psycopg.connect(stack.database_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT published_at, processed_at FROM outbox WHERE id = %s", (message_id,)
            ).fetchone()
        return row is not None and row[0] is not None and row[1] is not None

    wait_for(processed, timeout=60, what="outbox message processed")
    assert "e2e-outbox-1" in stack.log("honcho")
