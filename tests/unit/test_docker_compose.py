"""docker-compose.yml runs the Procfile's processes from one image, after a one-shot release step.

Docker does not run in CI, so these tests read the file the way compose would.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = ("release", "web", "worker", "webhooks", "beat")


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return {m.group(1): m.group(2) for m in (re.match(r"^(\w+):\s*(.+)$", line) for line in lines) if m}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def container_command(service: dict[str, Any]) -> str:
    """The shell line the container runs, after compose turned `$$` back into `$`."""
    command = service["command"]
    assert command[:2] == ["sh", "-c"], "a Procfile line needs a shell (for ${VAR:-default})"
    line = command[2].replace("$$", "$")
    assert line.startswith("exec "), "exec, so that the process itself receives SIGTERM"
    return line.removeprefix("exec ")


def test_the_stack_has_its_services(compose: dict[str, Any]):
    assert {"postgres", "redis", *PROCESSES} <= set(compose["services"])


@pytest.mark.parametrize("name", PROCESSES)
def test_each_process_runs_its_procfile_line(compose: dict[str, Any], name: str):
    assert container_command(compose["services"][name]) == procfile()[name]


@pytest.mark.parametrize("name", PROCESSES)
def test_every_process_comes_from_the_one_image(compose: dict[str, Any], name: str):
    service = compose["services"][name]
    assert service["build"] == "."
    assert service["image"] == compose["services"]["web"]["image"]
    assert service["init"] is True


@pytest.mark.parametrize("name", ["web", "worker", "webhooks", "beat"])
def test_processes_start_only_after_the_release_step_completed(compose: dict[str, Any], name: str):
    depends = compose["services"][name]["depends_on"]
    assert depends["release"] == {"condition": "service_completed_successfully"}
    assert depends["postgres"] == {"condition": "service_healthy"}
    assert depends["redis"] == {"condition": "service_healthy"}


def test_the_release_step_is_one_shot_after_postgres_is_healthy(compose: dict[str, Any]):
    release = compose["services"]["release"]
    assert release["restart"] == "no"
    assert release["depends_on"]["postgres"] == {"condition": "service_healthy"}


def test_healthchecks(compose: dict[str, Any]):
    services = compose["services"]
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    assert services["redis"]["healthcheck"]["test"][1:] == ["redis-cli", "ping"]
    assert any("/healthz" in part for part in services["web"]["healthcheck"]["test"])


def test_beat_is_a_single_replica(compose: dict[str, Any]):
    assert compose["services"]["beat"]["deploy"]["replicas"] == 1


def test_processes_get_the_whole_spec_configuration(compose: dict[str, Any]):
    env = compose["services"]["web"]["environment"]
    from app.config import Settings

    spec_names = {
        "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "PORT", "WEB_CONCURRENCY", "WORKER_CONCURRENCY",
        "SMTP_URL", "MAIL_FROM", "STRIPE_API_KEY", "STRIPE_API_BASE", "PAYMENT_MAX_ATTEMPTS",
        "PAYMENT_BACKOFF_SECONDS", "PAYMENT_PENDING_TIMEOUT_SECONDS", "NOTIFY_MAX_ATTEMPTS",
        "NOTIFY_BACKOFF_SECONDS", "NOTIFY_RETRY_INTERVAL_SECONDS", "RECONCILE_INTERVAL_SECONDS",
        "OUTBOX_INTERVAL_SECONDS", "AUTH_RATE_LIMIT", "PAYMENT_DEFAULT_TOKEN", "FEATURE_CACHE_SECONDS",
        "JWT_EXPIRES_SECONDS", "CURRENCY", "LOG_LEVEL", "APP_ENV",
    }  # fmt: skip
    assert spec_names <= set(env)
    assert set(env) <= set(Settings.__dataclass_fields__), "only settings the app reads"
    assert env["DATABASE_URL"].startswith("postgresql://") and "@postgres:5432/" in env["DATABASE_URL"]
    assert env["REDIS_URL"].startswith("redis://redis:6379/")


def test_no_signing_key_ships_in_the_compose_file(compose: dict[str, Any]):
    """A default SECRET_KEY here would let anyone who read it sign admin tokens (SPEC §5.10)."""
    secret = compose["services"]["web"]["environment"]["SECRET_KEY"]
    assert re.fullmatch(r"\$\{SECRET_KEY:\?[^}]+\}", secret), secret


def test_the_image_is_built_from_the_lock_and_runs_as_a_non_root_user():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.M)
    assert re.search(r"^COPY pyproject\.toml uv\.lock ", dockerfile, re.M)
    assert "uv export --locked --no-dev" in dockerfile
    assert "pip install --require-hashes --no-deps -r /tmp/requirements.txt" in dockerfile
    assert re.search(r"^RUN pip install --no-deps \.$", dockerfile, re.M)
    users = re.findall(r"^USER (\S+)$", dockerfile, re.M)
    assert users and users[-1] not in ("root", "0")
