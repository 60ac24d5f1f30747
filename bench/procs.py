"""The processes a benchmark starts: the Procfile lines as written, the payment sandbox, an SMTP
sink, the framework floor and a bare Celery worker. Each runs in its own process group, logs to a
file, and is stopped (SIGTERM, then SIGKILL) by ``stop``/``stop_all`` — also when the bench is
interrupted — so that no process outlives the bench.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


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


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it is truthy; bounded by ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = predicate()
        except Exception:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class Processes:
    """Named child processes started from shell command lines, each in its own session."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.lines = procfile()
        workdir.mkdir(parents=True, exist_ok=True)

    def log_path(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def log(self, name: str) -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, name: str, command: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        if name in self.running:
            raise RuntimeError(f"{name} is already running")
        handle = self.log_path(name).open("ab")
        process = subprocess.Popen(
            ["sh", "-c", f"exec {command}"],
            cwd=ROOT,
            env={**self.env, **(env or {})},
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        handle.close()
        self.running[name] = process
        return process

    def start_procfile(self, name: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start one process exactly as its Procfile line says."""
        return self.start(name, self.lines[name], env)

    def pid(self, name: str) -> int:
        return self.running[name].pid

    def stop(self, name: str, timeout: float = 30) -> None:
        process = self.running.pop(name, None)
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=timeout)
        # The group may hold children (gunicorn/celery workers) even when the leader is gone.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name, timeout=15)

    def check_alive(self, name: str) -> None:
        process = self.running.get(name)
        if process is None or process.poll() is not None:
            tail = self.log(name)[-3000:]
            raise RuntimeError(f"{name} is not running; its log ends with:\n{tail}")

    # -- readiness -------------------------------------------------------------------------------
    def wait_http(
        self, name: str, url: str, timeout: float = 60, ok: Callable[[int], bool] | None = None
    ) -> None:
        accept = ok or (lambda status: status == 200)

        def ready() -> bool:
            self.check_alive(name)
            return accept(requests.get(url, timeout=2).status_code)

        try:
            wait_for(ready, timeout, f"{name} at {url}")
        except RuntimeError:
            raise
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; log:\n{self.log(name)[-3000:]}") from None

    def wait_log(self, name: str, needle: str, timeout: float = 60, occurrence: int = 1) -> None:
        def ready() -> bool:
            self.check_alive(name)
            return self.log(name).count(needle) >= occurrence

        wait_for(ready, timeout, f"{name} to log {needle!r}")

    def wait_port(self, name: str, port: int, timeout: float = 30) -> None:
        def ready() -> bool:
            self.check_alive(name)
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True

        wait_for(ready, timeout, f"{name} on port {port}")
