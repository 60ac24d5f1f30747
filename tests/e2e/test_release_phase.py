"""The Procfile's `release` line (migrations) is idempotent and safe while the current release serves."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import psycopg
import requests
from alembic.config import Config
from alembic.script import ScriptDirectory

from tests.e2e.conftest import ROOT, PrivateRedis, Stack


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(ROOT / "migrations"))
    return str(ScriptDirectory.from_config(config).get_current_head())


def schema_revision(database_url: str) -> str:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return str(row[0]) if row else ""


def test_running_the_release_step_twice_against_a_live_stack_keeps_the_api_answering(stack: Stack):
    stack.start("web")
    stack.start("worker")
    stack.wait_web()
    stack.wait_worker()
    statuses: list[int] = []
    done = threading.Event()

    def traffic() -> None:
        with requests.Session() as http:
            for _ in range(10_000):  # bounded; stops as soon as both releases ran
                if done.is_set():
                    return
                for path in ("/readyz", "/products?page=1"):
                    statuses.append(http.get(stack.url(path), timeout=10).status_code)

    client = threading.Thread(target=traffic)
    client.start()
    try:
        stack.release()  # the fixture ran it once already: this is a deploy with nothing to migrate
        stack.release()
    finally:
        done.set()
        client.join(timeout=30)

    assert statuses, "requests were served while the release step ran"
    assert set(statuses) == {200}
    assert schema_revision(stack.database_url) == head_revision()


def test_two_release_steps_at_once_take_turns(
    tmp_path: Path, e2e_database_url: str, private_redis: PrivateRedis
):
    """E.g. a retried release job overlapping the first: both succeed, the schema is migrated once."""
    stack = Stack(tmp_path, e2e_database_url, private_redis)
    runs = [
        subprocess.Popen(
            ["sh", "-c", stack.lines["release"]],
            cwd=ROOT,
            env=stack.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    results = [(run.wait(timeout=120), run.stderr.read().decode() if run.stderr else "") for run in runs]
    assert [code for code, _ in results] == [0, 0], results
    assert schema_revision(e2e_database_url) == head_revision()
