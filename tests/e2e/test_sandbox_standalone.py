"""`flask --app app payments-sandbox` starts on its own: it needs neither a database nor Redis."""

from __future__ import annotations

import os
import subprocess

import requests

from tests.e2e.conftest import BIN, ROOT, free_port, wait_for


def test_the_payment_sandbox_starts_without_database_url_or_redis_url(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "TEST_DATABASE_URL")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    log = (tmp_path / "sandbox.log").open("wb")
    process = subprocess.Popen(
        ["flask", "--app", "app", "payments-sandbox", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}/v1/payment_intents"
        auth = {"Authorization": "Bearer sk_test_sandbox"}

        def answers() -> bool:
            assert process.poll() is None, (tmp_path / "sandbox.log").read_text()
            return requests.get(url, params={"limit": 1}, headers=auth, timeout=1).status_code == 200

        wait_for(answers, 60, what="the payment sandbox")
        created = requests.post(
            url,
            data={"amount": 999, "currency": "usd", "payment_method": "pm_card_visa"},
            headers=auth,
            timeout=5,
        )
        assert created.status_code == 200, created.text
        assert created.json()["amount"] == 999
    finally:
        process.terminate()
        process.wait(timeout=20)
