"""With DATABASE_URL/REDIS_URL unset, the devtools wrapper boots an embedded Postgres and Redis."""

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
from flask_migrate import upgrade
from app import create_app
app = create_app()
with app.app_context():
    upgrade()
client = app.test_client()
ready = client.get("/readyz")
print("READY", ready.status_code, ready.get_json()["database"]["status"], ready.get_json()["redis"]["status"])
"""


@pytest.mark.e2e
def test_embedded_postgres_and_redis_start_serve_and_stop(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.devtools.services",
            "--instance",
            str(tmp_path / "instance"),
            "--",
            sys.executable,
            "-c",
            PROBE,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "READY 200 ok ok" in result.stdout
    # No orphan: nothing is left running on the instance directory.
    leftovers = [
        p.info
        for p in psutil.process_iter(["pid", "cmdline"])
        if str(tmp_path) in " ".join(p.info.get("cmdline") or [])
    ]
    assert leftovers == []
