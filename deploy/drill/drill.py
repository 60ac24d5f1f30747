"""The deployment drill: zero downtime, proven under load on one machine.

    python -m deploy.drill [--rate 30] [--blue REV] [--bad-migration]      (or `make deploy-drill`)

Starts, on ``DATABASE_URL``'s server (a database of its own, ``oms_drill``) and ``REDIS_URL``:
the payment sandbox, an SMTP sink, PgBouncer in transaction mode (web's only way to Postgres;
workers, beat and the release phase connect directly), and HAProxy in front of the web processes,
health-checking ``/readyz`` and driven through its runtime API. *Blue* is the previous release
(by default the parent of the last commit that changed ``migrations/versions``, exported with
``git archive``), *green* the working tree. A fixed-rate mixed load runs from before the first
phase to after the last, and every request's outcome is recorded.

Phases: blue serves → the release migration while blue serves → canary 10 % → 50 % (with the
``checkout`` toggle taken from 0 % to 100 % ``rolloutPercent`` under load) → 100 % green (workers
and beat move to green) → rollback to blue → forward again → rolling restart of each green web
process → a worker restart while payments are in flight → beat failover to the standby.

Then it checks: every order answered 201 exists exactly once, every payment is COMPLETED and was
charged exactly once (the sandbox's records), stock equals its ledger. It writes
``docs/deploy-drill.json`` and ``docs/deploy-drill.png``; the exit status is 0 only when every phase
had zero errors and a p99 within ``--p99-ms`` and every check passed.

``--bad-migration`` adds a migration that rewrites the hot ``stock_movements`` table (a column with
a volatile default) and stops after the release phase: the drill must fail (errors or a p99
breach), and ``make lint-migrations``' squawk must reject the migration too; its report goes to
``docs/deploy-drill-bad-migration.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import redis
import requests

from bench.seed import libpq_url, recreate_database
from deploy.drill import infra
from deploy.drill.load import Load, Outcome, Shopper

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PASSWORD = "drill-password-1"  # noqa: S105 (throw-away drill accounts)
ADDRESS = {"line1": "1 Main St", "city": "Springfield", "postalCode": "12345", "country": "US"}
TOGGLE = "checkout"
FEATURE_CACHE_SECONDS = 2


def log(message: str) -> None:
    print(f"[{datetime.now(UTC).strftime('%H:%M:%S')}] drill: {message}", flush=True)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll ``predicate`` until it is truthy; bounded by ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = None
        with contextlib.suppress(Exception):
            result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def procfile(tree: Path) -> dict[str, str]:
    lines: dict[str, str] = {}
    for raw in (tree / "Procfile").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", raw)
        if match:
            lines[match.group(1)] = match.group(2)
    return lines


# ---- releases -----------------------------------------------------------------------------------


@dataclass
class Release:
    name: str  # blue | green
    tree: Path
    rev: str
    bin_dir: Path  # the venv whose interpreter runs it
    note: str = ""

    def env(self, base: dict[str, str]) -> dict[str, str]:
        # PYTHONPATH puts this tree's `app`/`worker` before the venv's editable install of green.
        return {
            **base,
            "PATH": f"{self.bin_dir}{os.pathsep}{base.get('PATH', '')}",
            "PYTHONPATH": str(self.tree),
        }

    def procfile(self) -> dict[str, str]:
        return procfile(self.tree)


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def default_blue_rev() -> str:
    """The parent of the last commit that changed migrations/versions: the newest code that runs on
    the schema *before* this release's migration, so the drill always has a real release migration
    to apply while blue serves."""
    last = git("log", "-1", "--format=%H", "--", "migrations/versions")
    return git("rev-parse", f"{last}^")


def runtime_dependencies(pyproject: Path) -> list[str]:
    return sorted(tomllib.loads(pyproject.read_text())["project"]["dependencies"])


def export_blue(rev: str, workdir: Path) -> Release:
    tree = workdir / "blue"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    here = Path(sys.executable).parent
    if runtime_dependencies(tree / "pyproject.toml") == runtime_dependencies(ROOT / "pyproject.toml"):
        note = "same runtime dependencies as green: shares the venv, its own code first on PYTHONPATH"
        return Release("blue", tree, rev, here, note)
    log(f"blue ({rev[:8]}) has other runtime dependencies: building its own venv")
    venv = workdir / "blue-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", str(tree)], check=True)
    return Release("blue", tree, rev, venv / "bin", "own venv (runtime dependencies differ)")


# ---- processes ----------------------------------------------------------------------------------


class Processes:
    """Named child processes, each in its own session, logging to a file; stopped at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def log_path(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def log(self, name: str) -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, name: str, command: str, cwd: Path, env: dict[str, str]) -> None:
        if name in self.running and self.running[name].poll() is None:
            raise RuntimeError(f"{name} is already running")
        with self.log_path(name).open("ab") as handle:
            self.running[name] = subprocess.Popen(
                ["sh", "-c", f"exec {command}"],
                cwd=cwd,
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def signal(self, name: str, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.running[name].pid, signum)

    def wait_exit(self, name: str, timeout: float) -> int | None:
        try:
            return self.running[name].wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, name: str, timeout: float = 30) -> int | None:
        """SIGTERM (graceful), then SIGKILL after ``timeout``; returns the exit status."""
        process = self.running.get(name)
        if process is None:
            return None
        if process.poll() is None:
            self.signal(name, signal.SIGTERM)
        code = self.wait_exit(name, timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        del self.running[name]
        return code

    def alive(self, name: str) -> bool:
        process = self.running.get(name)
        return process is not None and process.poll() is None

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name, timeout=15)


# ---- phases -------------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    start: float
    end: float = 0.0
    events: list[dict[str, Any]] = field(default_factory=list)
    haproxy: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


class Drill:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="oms-drill-"))
        self.workdir.chmod(0o755)  # PgBouncer runs as nobody and reads its files from here
        self.procs = Processes(self.workdir)
        self.phases: list[Phase] = []
        self.toggle_steps: list[tuple[float, int]] = []  # (t, rolloutPercent) of `checkout`
        self.load: Load | None = None
        self.haproxy: infra.HAProxyRuntime | None = None
        self.web_ports: dict[str, int] = {}
        self.release_of: dict[str, Release] = {}
        self.migration: dict[str, Any] = {}
        self.admin_token = ""
        self.shoppers: list[Shopper] = []

    # -- helpers ---------------------------------------------------------------------------------
    def now(self) -> float:
        return self.load.now() if self.load else 0.0

    def event(self, what: str, **details: Any) -> None:
        entry = {"t": round(self.now(), 2), "event": what, **details}
        if self.phases:
            self.phases[-1].events.append(entry)
        log(f"  t={entry['t']:.1f}s {what} {details if details else ''}")

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[Phase]:
        assert self.haproxy is not None
        before = self.haproxy.stats()
        current = Phase(name, round(self.now(), 3))
        self.phases.append(current)
        log(f"phase: {name}")
        try:
            yield current
        finally:
            current.end = round(self.now(), 3)
            current.haproxy = infra.stats_delta(before, self.haproxy.stats())
            current.extra["loadAverage1m"] = round(os.getloadavg()[0], 1)

    def hold(self, seconds: float) -> None:
        time.sleep(seconds)

    def psql(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        # The drill's own statements (seeding, checks) are not bound by the app's timeouts.
        with psycopg.connect(
            libpq_url(self.direct_url), autocommit=True, options="-c statement_timeout=0"
        ) as conn:
            cursor = conn.execute(sql, params)
            return list(cursor.fetchall()) if cursor.description else []

    # -- the stack -------------------------------------------------------------------------------
    def base_env(self) -> dict[str, str]:
        return {
            **{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
            "APP_ENV": "development",
            "DATABASE_URL": self.direct_url,
            "REDIS_URL": self.redis_url,
            # Both releases must accept each other's tokens: one key for all.
            "SECRET_KEY": self.secret_key,
            "STRIPE_API_BASE": f"http://127.0.0.1:{self.sandbox_port}",
            "SMTP_URL": f"smtp://127.0.0.1:{self.smtp_port}",
            "WEB_CONCURRENCY": "1",
            "WORKER_CONCURRENCY": "2",
            "FEATURE_CACHE_SECONDS": str(FEATURE_CACHE_SECONDS),
            "TRUSTED_PROXY_COUNT": "1",
            # Seeding signs up and logs in every shopper from one address.
            "AUTH_RATE_LIMIT": "100000/minute",
            "SIGNUP_RATE_LIMIT": "100000/hour",
            "AUTH_ACCOUNT_RATE_LIMIT": "100000/hour",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }

    def web_env(self, release: Release, port: int) -> dict[str, str]:
        return {
            **release.env(self.base_env()),
            "PORT": str(port),
            "DATABASE_URL": self.pooled_url,  # through PgBouncer, transaction mode
            "DB_PREPARED_STATEMENTS": "false",
            "PROMETHEUS_MULTIPROC_DIR": str(self.workdir / f"metrics-{port}"),
        }

    def start_web(self, server: str, release: Release) -> None:
        port = self.web_ports.setdefault(server, free_port())
        (self.workdir / f"metrics-{port}").mkdir(exist_ok=True)
        self.release_of[server] = release
        self.procs.start(server, release.procfile()["web"], release.tree, self.web_env(release, port))

    def wait_ready(self, server: str, timeout: float = 90) -> None:
        url = f"http://127.0.0.1:{self.web_ports[server]}/readyz"

        def ready() -> bool:
            if not self.procs.alive(server):
                raise RuntimeError(f"{server} exited:\n{self.procs.log(server)[-2000:]}")
            return requests.get(url, timeout=2).status_code == 200

        deadline = time.monotonic() + timeout
        while True:
            try:
                if ready():
                    return
            except RuntimeError:
                raise
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{server} not ready:\n{self.procs.log(server)[-2000:]}")
            time.sleep(0.2)

    def haproxy_status(self, server: str) -> str:
        assert self.haproxy is not None
        return str(self.haproxy.stats()[server]["status"])

    def wait_haproxy(self, server: str, up: bool, timeout: float = 30) -> str:
        def seen() -> str | None:
            status = self.haproxy_status(server)
            return status if (status.startswith("UP") if up else "DOWN" in status) else None

        return str(wait_for(seen, timeout, f"haproxy to see {server} {'UP' if up else 'DOWN'}"))

    def start_worker(self, name: str, release: Release) -> None:
        env = {**release.env(self.base_env()), "LOG_LEVEL": "INFO"}
        self.procs.start(name, release.procfile()["worker"], release.tree, env)

    def start_beat(self, name: str, release: Release) -> None:
        env = {
            **release.env(self.base_env()),
            "LOG_LEVEL": "INFO",  # beat_leading / beat_standby are INFO lines
            "CELERY_BEAT_SCHEDULE": str(self.workdir / f"{name}-schedule"),
        }
        self.procs.start(name, release.procfile()["beat"], release.tree, env)

    def set_weights(self, weights: dict[str, int]) -> None:
        assert self.haproxy is not None
        for server, weight in weights.items():
            self.haproxy.set_weight(server, weight)
        self.event("haproxy weights", **weights)

    def drain(self, servers: list[str], timeout: float = 20) -> None:
        """No new requests to these servers; wait until their in-flight requests are answered."""
        assert self.haproxy is not None
        for server in servers:
            self.haproxy.set_state(server, "drain")
        wait_for(
            lambda: all(self.haproxy.stats()[s]["current"] == 0 for s in servers),  # type: ignore[union-attr]
            timeout,
            f"{servers} to drain",
        )
        self.event("haproxy drained", servers=servers)

    def pending_payments(self) -> int:
        return int(self.psql("SELECT count(*) FROM payments WHERE status = 'PENDING'")[0][0])

    def queued(self, *queues: str) -> int:
        client = redis.Redis.from_url(self.redis_url)
        return sum(int(client.llen(q)) for q in queues or ("oms", "oms.notifications"))

    def api(self, method: str, path: str, token: str = "", port: int | None = None, **kw: Any) -> Any:
        base = f"http://127.0.0.1:{port or self.lb_port}"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = requests.request(method, base + path, headers=headers, timeout=30, **kw)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path} → {response.status_code}: {response.text[:300]}")
        return response.json() if response.content else None

    def set_toggle(self, percent: int) -> None:
        # Sent to a green process: blue's API does not know rolloutPercent (422 there).
        body = {"enabled": True, "rolloutPercent": percent}
        self.api("PUT", f"/admin/features/{TOGGLE}", self.admin_token, self.web_ports["green1"], json=body)
        self.toggle_steps.append((round(self.now(), 3), percent))
        self.event("toggle", feature=TOGGLE, rolloutPercent=percent)

    # -- setup -----------------------------------------------------------------------------------
    def setup(self) -> None:
        args = self.args
        self.haproxy_bin = infra.ensure_debian_package("haproxy", "haproxy")
        self.pgbouncer_bin = infra.ensure_debian_package("pgbouncer", "pgbouncer")
        for name in ("DATABASE_URL", "REDIS_URL"):
            if not os.environ.get(name):
                raise SystemExit(f"{name} is not set: run `make deploy-drill` (it boots embedded services)")
        self.direct_url = recreate_database(os.environ["DATABASE_URL"], args.database)
        # Through PgBouncer the startup `options` are dropped: the timeouts go on the database.
        with psycopg.connect(libpq_url(self.direct_url), autocommit=True) as conn:
            for setting in (
                "statement_timeout = '15s'",
                "lock_timeout = '5s'",
                "idle_in_transaction_session_timeout = '60s'",
            ):
                conn.execute(f"ALTER DATABASE {args.database} SET {setting}")
        self.redis_url = os.environ["REDIS_URL"]
        redis.Redis.from_url(self.redis_url).flushdb()
        self.secret_key = secrets.token_urlsafe(48)
        self.sandbox_port, self.smtp_port = free_port(), free_port()
        self.lb_port, self.pgbouncer_port = free_port(), free_port()

        blue_rev = git("rev-parse", args.blue) if args.blue else default_blue_rev()
        self.blue = export_blue(blue_rev, self.workdir)
        head = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
        self.green = Release("green", ROOT, head + ("+dirty" if dirty else ""), Path(sys.executable).parent)
        log(f"blue = {blue_rev[:10]} ({self.blue.note}); green = {self.green.rev[:10]} (working tree)")
        log(f"work directory (logs): {self.workdir}")

        green_env = self.green.env(self.base_env())
        self.procs.start(
            "payments",
            f"flask --app app payments-sandbox --host 127.0.0.1 --port {self.sandbox_port}",
            ROOT,
            green_env,
        )
        self.procs.start(
            "smtp",
            f"{sys.executable} -m app.devtools.smtp_sink --host 127.0.0.1 --port {self.smtp_port}",
            ROOT,
            green_env,
        )
        # Blue's release phase: the schema blue was built for.
        self.run_release(self.blue, timeout=300)
        ini, self.pooled_url = infra.pgbouncer_config(self.workdir, self.pgbouncer_port, self.direct_url, 8)
        self.procs.start("pgbouncer", infra.pgbouncer_command(self.pgbouncer_bin, ini), ROOT, green_env)
        wait_for(lambda: psycopg.connect(libpq_url(self.pooled_url)).close() is None, 30, "pgbouncer")
        for server in ("blue1", "blue2"):
            self.start_web(server, self.blue)
        self.web_ports["green1"], self.web_ports["green2"] = free_port(), free_port()
        self.start_worker("worker-blue", self.blue)
        self.start_beat("beat-blue", self.blue)
        for server in ("blue1", "blue2"):
            self.wait_ready(server)
        cfg = infra.haproxy_config(
            self.workdir, self.lb_port, self.web_ports, {"blue1": 50, "blue2": 50, "green1": 0, "green2": 0}
        )
        self.procs.start("haproxy", f"{self.haproxy_bin} -db -f {cfg}", ROOT, green_env)
        self.haproxy = infra.HAProxyRuntime(self.workdir / "haproxy.sock")
        wait_for(lambda: self.haproxy_status("blue1").startswith("UP"), 30, "haproxy")
        wait_for(lambda: self.haproxy_status("blue2").startswith("UP"), 30, "haproxy")
        self.seed()

    def run_release(self, release: Release, timeout: float, directory: Path | None = None) -> dict[str, Any]:
        command = release.procfile()["release"]
        if directory is not None:
            command += f" --directory {directory}"
        started = time.monotonic()
        out = subprocess.run(
            ["sh", "-c", command],
            cwd=release.tree,
            env=release.env(self.base_env()),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        result = {
            "release": release.name,
            "command": command,
            "exitStatus": out.returncode,
            "seconds": round(time.monotonic() - started, 2),
            "output": (out.stdout + out.stderr)[-1500:],
        }
        if out.returncode != 0 and directory is None and release is self.blue:
            raise RuntimeError(f"blue's release phase failed:\n{result['output']}")
        return result

    def seed(self) -> None:
        args = self.args
        email = f"drill-admin-{uuid.uuid4().hex[:8]}@example.com"
        subprocess.run(
            ["flask", "--app", "app", "create-admin", "--email", email, "--password", PASSWORD],
            cwd=self.blue.tree,
            env=self.blue.env(self.base_env()),
            check=True,
            capture_output=True,
            timeout=120,
        )
        self.admin_token = self.api("POST", "/auth/token", json={"email": email, "password": PASSWORD})[
            "accessToken"
        ]
        self.products = []
        for i in range(args.products):
            body = {
                "productName": f"Drill item {i}",
                "description": "drill",
                "price": 5 + i,
                "stock": 1_000_000,
            }
            self.products.append(self.api("POST", "/products", self.admin_token, json=body)["productId"])
        for i in range(args.users):
            user_email = f"drill-{i}-{uuid.uuid4().hex[:8]}@example.com"
            body = {"name": f"Drill {i}", "email": user_email, "password": PASSWORD, "address": ADDRESS}
            user = self.api("POST", "/users", json=body)
            token = self.api("POST", "/auth/token", json={"email": user_email, "password": PASSWORD})
            self.shoppers.append(Shopper(i, user["userId"], token["accessToken"]))
        # History: a large ledger, as a shop that has run for a while has. Net zero per product
        # (+1/-1 pairs), so stock still equals the ledger. It is what makes a table rewrite slow.
        if args.history_rows:
            archive = self.api(
                "POST",
                "/products",
                self.admin_token,
                json={"productName": "Drill archive", "description": "history", "price": 1, "stock": 10},
            )["productId"]
            started = time.monotonic()
            chunk = 200_000
            for first in range(1, args.history_rows + 1, chunk):
                self.psql(
                    "INSERT INTO stock_movements "
                    "(id, product_id, delta, reason, note, stock_after, created_at) "
                    "SELECT gen_random_uuid(), %(p)s, CASE WHEN g %% 2 = 1 THEN 1 ELSE -1 END, 'ADJUSTMENT', "
                    "'drill history', CASE WHEN g %% 2 = 1 THEN 11 ELSE 10 END, "
                    "now() - make_interval(secs => %(n)s - g) "
                    "FROM generate_series(%(first)s, %(last)s) g",
                    {
                        "p": archive,
                        "n": args.history_rows,
                        "first": first,
                        "last": min(first + chunk - 1, args.history_rows),
                    },
                )
            self.psql("VACUUM ANALYZE stock_movements")
            log(f"seeded {args.history_rows:,} ledger rows in {time.monotonic() - started:.0f}s")

    # -- the phases ------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        args = self.args
        try:
            self.setup()
            directory = self.bad_migration_directory() if args.bad_migration else None
            self.load = Load(f"http://127.0.0.1:{self.lb_port}", self.products, self.shoppers, args.rate)
            self.load.start(clients=args.clients)
            log(f"load: {args.rate} req/s, {args.users} shoppers, {args.products} products")
            with self.phase("blue serves"):
                self.hold(args.hold)
            with self.phase("release migration (blue serves)") as p:
                self.event("release phase starts", command=self.green.procfile()["release"])
                self.migration = self.run_release(self.green, timeout=600, directory=directory)
                self.event(
                    "release phase done",
                    exitStatus=self.migration["exitStatus"],
                    seconds=self.migration["seconds"],
                )
                p.extra["migration"] = self.migration
                self.hold(args.hold / 2)
            if args.bad_migration:
                self.hold(2)
                return self.finish()
            self.deploy_phases()
            return self.finish()
        finally:
            if self.load is not None:
                self.load.stop()
            self.procs.stop_all()

    def deploy_phases(self) -> None:
        args = self.args
        with self.phase("green starts (not in rotation)"):
            for server in ("green1", "green2"):  # one at a time: a boot is a burst of CPU
                self.start_web(server, self.green)
                self.wait_ready(server)
                self.event(f"{server} ready on /readyz")
            self.hold(2)
        with self.phase("canary 10 %"):
            self.set_weights({"blue1": 45, "blue2": 45, "green1": 5, "green2": 5})
            for server in ("green1", "green2"):
                self.wait_haproxy(server, up=True)
            self.hold(args.hold)
        with self.phase("canary 50 % + toggle 0→100 %"):
            self.set_weights({"blue1": 50, "blue2": 50, "green1": 50, "green2": 50})
            for percent in (0, 10, 50, 100):
                self.set_toggle(percent)
                self.hold(max(4.0, args.hold / 4))
            self.hold(FEATURE_CACHE_SECONDS + 2)
        with self.phase("100 % green"):
            self.set_weights({"green1": 50, "green2": 50})
            self.drain(["blue1", "blue2"])
            self.set_weights({"blue1": 0, "blue2": 0})
            # Workers and beat move to green too: green's worker first, then blue's stops warm.
            self.start_worker("worker-green", self.green)
            wait_for(lambda: " ready." in self.procs.log("worker-green"), 60, "green worker")
            self.event("green worker ready")
            code = self.procs.stop("worker-blue", timeout=60)
            self.event("blue worker stopped (SIGTERM, warm shutdown)", exitStatus=code)
            code = self.procs.stop("beat-blue", timeout=30)
            self.event("blue beat stopped", exitStatus=code)
            self.start_beat("beat-green", self.green)
            wait_for(lambda: "beat_leading" in self.procs.log("beat-green"), 45, "green beat to lead")
            self.event("green beat leads")
            self.start_beat("beat-standby", self.green)
            wait_for(lambda: "beat_standby" in self.procs.log("beat-standby"), 45, "standby beat")
            self.event("standby beat stands by")
            self.hold(args.hold)
        with self.phase("rollback to blue"):
            self.set_weights({"blue1": 50, "blue2": 50})
            self.drain(["green1", "green2"])
            self.set_weights({"green1": 0, "green2": 0})
            self.hold(args.hold)
        with self.phase("forward to green again"):
            self.set_weights({"green1": 50, "green2": 50})
            self.drain(["blue1", "blue2"])
            self.set_weights({"blue1": 0, "blue2": 0})
            for server in ("blue1", "blue2"):
                code = self.procs.stop(server, timeout=40)
                self.event(f"{server} stopped (SIGTERM)", exitStatus=code)
            self.hold(args.hold / 2)
        with self.phase("rolling restart of green web"):
            for server in ("green1", "green2"):
                self.rolling_restart(server)
            self.hold(3)
        with self.phase("worker restart mid-payment") as p:
            self.api("POST", "/_sandbox/faults", port=self.sandbox_port, json={"delayMs": 1500})
            self.event("sandbox: every charge takes 1.5 s")
            pending = wait_for(
                lambda: self.pending_payments() >= 2 and self.pending_payments(), 30, "payments"
            )
            self.event("payments in flight", pending=pending)
            p.extra["pendingAtSigterm"] = pending
            code = self.procs.stop("worker-green", timeout=90)
            self.event("green worker stopped (SIGTERM, warm shutdown)", exitStatus=code)
            self.start_worker("worker-green-2", self.green)
            wait_for(lambda: " ready." in self.procs.log("worker-green-2"), 60, "restarted worker")
            self.event("green worker restarted")
            self.api("DELETE", "/_sandbox/faults", port=self.sandbox_port)
            self.hold(args.hold / 2)
        with self.phase("beat failover"):
            self.procs.signal("beat-green", signal.SIGKILL)
            self.procs.wait_exit("beat-green", 10)
            self.event("green beat killed (SIGKILL): its leader lock expires, not released")
            wait_for(lambda: "beat_leading" in self.procs.log("beat-standby"), 60, "standby to take over")
            self.event("standby beat leads")
            self.hold(3)

    def rolling_restart(self, server: str) -> None:
        """Drain in HAProxy, SIGTERM (gunicorn drains, /readyz → 503), seen DOWN, restart, seen UP."""
        assert self.haproxy is not None
        self.drain([server])
        self.procs.signal(server, signal.SIGTERM)
        self.event(f"{server}: SIGTERM (gunicorn drains; /readyz answers 503 draining)")
        code = self.procs.wait_exit(server, 40)
        self.event(f"{server}: exited", exitStatus=code)
        status = self.wait_haproxy(server, up=False, timeout=15)
        self.event(f"{server}: haproxy health check sees it {status}")
        self.procs.stop(server, timeout=5)
        self.start_web(server, self.green)
        self.wait_ready(server)
        self.haproxy.set_state(server, "ready")
        status = self.wait_haproxy(server, up=True, timeout=30)
        self.event(f"{server}: restarted, haproxy sees it {status}")

    def bad_migration_directory(self) -> Path:
        """The green tree's migrations plus one that rewrites a hot table under ACCESS EXCLUSIVE."""
        from alembic.script import ScriptDirectory

        directory = self.workdir / "migrations-bad"
        shutil.copytree(ROOT / "migrations", directory)
        head = ScriptDirectory(str(directory)).get_current_head()
        (directory / "versions" / "0099_drill_bad_migration.py").write_text(BAD_MIGRATION.format(down=head))
        lint = subprocess.run(
            [sys.executable, "-m", "app.devtools.lint_migrations", "--directory", str(directory)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        self.lint_result = {"exitStatus": lint.returncode, "output": (lint.stdout + lint.stderr)[-1500:]}
        log(f"squawk on the bad migration: exit {lint.returncode}\n{lint.stdout[-800:]}")
        return directory

    # -- verdict ---------------------------------------------------------------------------------
    def finish(self) -> dict[str, Any]:
        assert self.load is not None
        if not self.args.bad_migration:
            with self.phase("settle (load stopped)"):
                self.load.stop()
                # E-mails (oms.notifications) drain after the payments and are not checked here.
                try:
                    wait_for(
                        lambda: self.pending_payments() == 0 and self.queued("oms") == 0, 300, "payments"
                    )
                    self.event("every payment settled, the oms queue is empty")
                except TimeoutError:
                    self.event("payments still PENDING after 300 s", pending=self.pending_payments())
        else:
            self.load.stop()
        self.replay_refused_again()
        outcomes = self.load.snapshot()
        phases = [self.phase_report(p, outcomes) for p in self.phases]
        checks = self.final_checks(outcomes)
        return self.result(phases, checks, outcomes)

    def replay_refused_again(self) -> None:
        """Replays refused by the toggle (503 feature-disabled) are sent again, the toggle now at
        100 %: each must answer the order its first request created, flagged as a replay."""
        assert self.load is not None
        self.replays_after_toggle: list[dict[str, Any]] = []
        for shopper, key, body, order_id in self.load.replays_refused:
            response = requests.post(
                f"http://127.0.0.1:{self.lb_port}/orders",
                json=body,
                headers={"Authorization": f"Bearer {shopper.token}", "Idempotency-Key": key},
                timeout=30,
            )
            answer = response.json() if response.content else {}
            ok = (
                response.status_code == 201
                and answer.get("orderId") == order_id
                and response.headers.get("Idempotent-Replayed") == "true"
            )
            self.replays_after_toggle.append({"key": key, "status": response.status_code, "sameOrder": ok})
            if not ok:
                self.load.replay_mismatches.append(f"{key} after the toggle: {response.status_code}")

    def phase_report(self, phase: Phase, outcomes: list[Outcome]) -> dict[str, Any]:
        mine = [o for o in outcomes if phase.start <= o.t < phase.end]
        latencies = sorted(o.ms for o in mine)
        served = [o for o in mine if o.server]
        green = sum(1 for o in served if self.release_of.get(o.server) is self.green)
        by_kind = {
            k: sum(1 for o in mine if o.kind == k) for k in ("ok", "expected409", "featureOff", "error")
        }
        p99 = percentile(latencies, 99)
        return {
            "name": phase.name,
            "start_s": phase.start,
            "end_s": phase.end,
            "requests": len(mine),
            "errors": by_kind["error"],
            "expected409": by_kind["expected409"],
            "checkoutToggledOff503": by_kind["featureOff"],
            "p50_ms": round(percentile(latencies, 50), 1),
            "p99_ms": round(p99, 1),
            "max_ms": round(latencies[-1], 1) if latencies else 0.0,
            "greenShare": round(green / len(served), 3) if served else None,
            "p99WithinLimit": p99 <= self.args.p99_ms,
            "errorSamples": sorted({o.detail for o in mine if o.kind == "error"})[:5],
            "haproxy": phase.haproxy,
            "events": phase.events,
            **phase.extra,
        }

    def final_checks(self, outcomes: list[Outcome]) -> dict[str, Any]:
        assert self.load is not None
        users = [s.user_id for s in self.shoppers]
        answered = set(self.load.orders_201.values())
        in_db = [
            str(r[0]) for r in self.psql("SELECT id FROM orders WHERE user_id = ANY(%s::uuid[])", (users,))
        ]
        orders_ok = len(in_db) == len(set(in_db)) == len(answered) and set(in_db) == answered
        payments = self.psql(
            "SELECT p.id, p.status FROM payments p JOIN orders o ON o.id = p.order_id "
            "WHERE o.user_id = ANY(%s::uuid[])",
            (users,),
        )
        not_completed = [str(pid) for pid, status in payments if status != "COMPLETED"]
        charged_wrong = []
        for pid, _ in payments:
            stats = requests.get(
                f"http://127.0.0.1:{self.sandbox_port}/_sandbox/stats",
                params={"paymentId": str(pid)},
                timeout=10,
            ).json()
            if stats["succeededCharges"] != 1:
                charged_wrong.append({"paymentId": str(pid), "succeededCharges": stats["succeededCharges"]})
        drift = self.psql(
            "SELECT p.id, p.stock, coalesce(sum(m.delta), 0) FROM products p "
            "LEFT JOIN stock_movements m ON m.product_id = p.id GROUP BY p.id, p.stock "
            "HAVING p.stock <> coalesce(sum(m.delta), 0)"
        )
        toggle = self.toggle_check(outcomes)
        checks = {
            "ordersAnswered201": len(answered),
            "ordersInDatabase": len(in_db),
            "everyOrderAnswered201ExistsExactlyOnce": orders_ok,
            "idempotentReplaysChecked": sum(1 for o in outcomes if o.action == "checkout" and o.status == 201)
            - len(answered),
            "idempotentReplayMismatches": self.load.replay_mismatches[:5],
            # A replay while the toggle was off for its user answered 503 (the toggle is checked
            # before the key); sent again after the rollout, each must answer its order.
            "replaysRefusedByTheToggleThenAnsweredTheirOrder": self.replays_after_toggle,
            "payments": len(payments),
            "paymentsNotCompleted": not_completed[:10],
            "paymentsNotChargedExactlyOnce": charged_wrong[:10],
            "everyPaymentCompletedAndChargedOnce": bool(payments) and not not_completed and not charged_wrong,
            "productsWhoseStockDiffersFromLedger": len(drift),
            "stockEqualsLedger": not drift,
            "toggle": toggle,
        }
        if self.args.bad_migration:  # the drill stopped after the release phase: no payments asked
            checks["everyPaymentCompletedAndChargedOnce"] = not charged_wrong
        return checks

    def toggle_check(self, outcomes: list[Outcome]) -> dict[str, Any]:
        """A checkout refused by the toggle is only ever for a user outside the rollout in force
        (within the feature cache's staleness), and none is refused once it is at 100 %."""
        from app.domain.rollout import rollout_bucket

        if not self.toggle_steps:
            return {"steps": [], "consistent": True}
        stale = FEATURE_CACHE_SECONDS + 1.0
        wrong = []
        for o in outcomes:
            if o.kind != "featureOff":
                continue
            window = [p for t, p in self.toggle_steps if o.t - stale <= t <= o.t]
            before = [p for t, p in self.toggle_steps if t < o.t - stale]
            in_force = min(window + before[-1:]) if (window or before) else 100
            bucket = rollout_bucket(TOGGLE, self.shoppers[o.user].user_id)
            if bucket < in_force:
                wrong.append({"t": o.t, "user": o.user, "bucket": bucket, "rolloutPercent": in_force})
        return {
            "steps": [{"t": t, "rolloutPercent": p} for t, p in self.toggle_steps],
            "refusedWhileRollingOut": sum(1 for o in outcomes if o.kind == "featureOff"),
            "refusedInsideTheRollout": wrong[:10],
            "consistent": not wrong,
        }

    def result(
        self, phases: list[dict[str, Any]], checks: dict[str, Any], outcomes: list[Outcome]
    ) -> dict[str, Any]:
        args = self.args
        all_ok = all(p["errors"] == 0 and p["p99WithinLimit"] for p in phases)
        checks_ok = (
            checks["everyOrderAnswered201ExistsExactlyOnce"]
            and checks["everyPaymentCompletedAndChargedOnce"]
            and checks["stockEqualsLedger"]
            and not checks["idempotentReplayMismatches"]
            and checks["toggle"]["consistent"]
        )
        migration_ok = self.migration.get("exitStatus") == 0
        return {
            "generatedAt": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
            "badMigration": args.bad_migration,
            "blue": {"rev": self.blue.rev, "how": self.blue.note},
            "green": {"rev": self.green.rev},
            "parameters": {
                "ratePerSecond": args.rate,
                "users": args.users,
                "products": args.products,
                "historyRows": args.history_rows,
                "p99LimitMs": args.p99_ms,
                "webProcesses": "2 blue + 2 green, gunicorn 1 worker × 4 threads each",
                "loadGenerator": "Python requests on a thread pool, open loop, fixed rate",
                "featureCacheSeconds": FEATURE_CACHE_SECONDS,
                "haproxy": subprocess.run(
                    [self.haproxy_bin, "-v"], capture_output=True, text=True
                ).stdout.splitlines()[0],
                "pgbouncer": subprocess.run(
                    [self.pgbouncer_bin, "--version"], capture_output=True, text=True
                ).stdout.splitlines()[0],
            },
            "totals": {
                "requests": len(outcomes),
                "errors": sum(1 for o in outcomes if o.kind == "error"),
                "expected409": sum(1 for o in outcomes if o.kind == "expected409"),
                "checkoutToggledOff503": sum(1 for o in outcomes if o.kind == "featureOff"),
            },
            "migration": self.migration,
            "migrationLint": getattr(self, "lint_result", None),
            "phases": phases,
            "checks": checks,
            "passed": all_ok and checks_ok and migration_ok,
            "timeline": timeline(outcomes),
        }


BAD_MIGRATION = '''"""DELIBERATELY BAD (deploy drill --bad-migration): a column with a volatile default
rewrites the whole stock_movements table under an ACCESS EXCLUSIVE lock; every checkout waits on it."""

import sqlalchemy as sa
from alembic import op

revision = "0099"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column(
        "stock_movements",
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"),
                  nullable=False),
    )


def downgrade():
    op.drop_column("stock_movements", "recorded_at")
'''


def percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(pct / 100 * len(sorted_values) + 0.5) - 1))
    return float(sorted_values[index])


def timeline(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    """Per second: requests, errors, p50/p99, share answered by each server."""
    buckets: dict[int, list[Outcome]] = {}
    for o in outcomes:
        buckets.setdefault(int(o.t), []).append(o)
    rows = []
    for second in sorted(buckets):
        mine = buckets[second]
        latencies = sorted(o.ms for o in mine)
        rows.append(
            {
                "t": second,
                "requests": len(mine),
                "errors": sum(1 for o in mine if o.kind == "error"),
                "p50_ms": round(percentile(latencies, 50), 1),
                "p99_ms": round(percentile(latencies, 99), 1),
                "servers": {
                    s: sum(1 for o in mine if o.server == s) for s in sorted({o.server for o in mine})
                },
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=30.0, help="requests per second (fixed, open loop)")
    parser.add_argument("--users", type=int, default=60)
    parser.add_argument("--products", type=int, default=20)
    parser.add_argument("--clients", type=int, default=32, help="client threads")
    parser.add_argument("--hold", type=float, default=20.0, help="seconds each steady phase lasts")
    parser.add_argument("--p99-ms", type=float, default=3000.0, help="p99 limit of every phase")
    parser.add_argument("--history-rows", type=int, default=1_000_000, help="ledger rows seeded before")
    parser.add_argument("--database", default="oms_drill", help="database created on DATABASE_URL's server")
    parser.add_argument("--blue", help="the previous release (a git revision); default: see docs/deploy.md")
    parser.add_argument("--bad-migration", action="store_true", help="inject a table-rewriting migration")
    parser.add_argument(
        "--out", type=Path, help="report path (default docs/deploy-drill[-bad-migration].json)"
    )
    args = parser.parse_args(argv)
    out = args.out or DOCS / (
        "deploy-drill-bad-migration.json" if args.bad_migration else "deploy-drill.json"
    )
    drill = Drill(args)
    result = drill.run()
    from deploy.drill.report import write_outputs

    write_outputs(result, out)
    print(
        json.dumps(
            {"passed": result["passed"], "totals": result["totals"], "checks": result["checks"]}, indent=2
        )
    )
    return 0 if result["passed"] else 1
