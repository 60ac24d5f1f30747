"""``make bench``: how close the application gets to what its database (and its frameworks) can do,
measured side by side on this machine.

    python -m app.devtools.services -- python -m bench.run [--quick] [--runs N] [--duration S] [--only PHASES]

``DATABASE_URL`` / ``REDIS_URL`` name the servers (``make bench`` starts embedded ones when unset).
The bench works in a database of its own on that server (``oms_bench``, dropped and created
again; ``oms_bench_recon`` for the reconciliation) and in Redis logical database 14 of that
server (flushed), runs the Procfile's ``release`` line, seeds users, products and filled carts in
SQL, starts ``web`` and ``beat`` exactly as the Procfile says (``worker`` for the payments phase),
the payment sandbox and an SMTP sink, and then measures:

1. ``limit``    the checkout transaction(s) the app issues for one ``POST /orders`` (captured from
                the app itself), replayed by pgbench at 1, 8 and 32 clients;
2. ``checkout`` ``POST /orders`` through the stack (auth, validation, Idempotency-Key, outbox) with
                wrk at 1, 8, 32 connections, each request a different user's pre-filled cart;
3. ``reads``    ``GET /products/{id}`` and ``GET /orders/{id}`` vs bare Flask + psycopg running
                the same SQL (bench/floor_app.py) under the same gunicorn settings;
3b. ``shipments`` admin ``POST /orders/{id}/shipments``, each request a different paid order, vs
                pgbench replaying the SQL that one such request issued (captured from the app);
4. ``payments`` payments drained per second by one worker (concurrency 2) after a burst of orders,
                vs bare Celery no-op tasks (bench/noop_tasks.py) on the same broker;
5. ``webhooks`` webhook deliveries drained per second by the ``webhooks`` process (concurrency 2)
                to a local receiver that answers at once, vs bare Celery tasks making the same POST
                (bench/webhook_floor.py);
6. ``scaling``  ``POST /orders`` with 1, 10 and 50 lines; ``flask reconcile-stock`` over growing
                product tables (time and peak RSS).

Every figure is the median of ``--runs`` runs (3; 1 with ``--quick``). Results go to
docs/bench/results.json, docs/bench/results.md and PNG charts there; process logs to
instance/bench/. Every process the bench starts is stopped when it ends or is interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import secrets
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import redis

from app.adapters.queue import WORKER_QUEUES
from bench import capture, loadgen, profiles, report, seed
from bench.procs import BIN, ROOT, Processes, free_port, wait_for

PHASES = (
    "limit",
    "checkout",
    "reads",
    "shipments",
    "payments",
    "webhooks",
    "fanout",
    "stripe-webhook",
    "scaling",
    "reconcile",
)
FANOUT_ENDPOINTS = 10
# The fan-out floor's one statement: the message and one delivery per enabled endpoint.
_FLOOR_FAN_OUT = (
    "WITH m AS (INSERT INTO webhook_messages (id, outbox_id, event_type, data_kind, data, occurred_at) "
    "VALUES (gen_random_uuid(), %s, 'product.low_stock', 'event', %s, now()) "
    "ON CONFLICT (outbox_id) DO NOTHING RETURNING id) "
    "INSERT INTO webhook_deliveries (id, endpoint_id, message_id, status, attempts, retries_used, "
    "next_attempt_at, queued_at, created_at) SELECT gen_random_uuid(), e.id, m.id, 'PENDING', 0, 0, "
    "now(), now(), now() FROM m, webhook_endpoints e WHERE e.enabled RETURNING id"
)
PRODUCTS = 1000
L10_FIRST, L50_FIRST = 10_000_000, 20_000_000
SHIPPING_ADMIN = 90_000_000  # the user number of the admin who ships (bench/seed.py ids)
REDIS_DB = 14


@dataclass
class Plan:
    quick: bool
    runs: int
    duration: float
    clients: tuple[int, ...]
    read_clients: int
    pool: int  # users with a 1-line cart, consumed one per order, refilled between measurements
    shipping_pool: int  # paid orders, shipped one per request, unshipped between measurements
    scaling_pool: int
    burst: int
    reconcile_sizes: tuple[int, ...]
    web_concurrency: int
    phases: tuple[str, ...]
    out_dir: Path
    profile: bool
    # The worker as the Procfile runs it unless told: WORKER_CONCURRENCY from the app's default
    # (None), the pool Celery's (None: the Procfile line gives no --pool).
    worker_concurrency: int | None = None
    worker_pool: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Plan:
        cpus = os.cpu_count() or 1
        quick = bool(args.quick)
        return cls(
            quick=quick,
            runs=args.runs or (1 if quick else 3),
            duration=args.duration or (3.0 if quick else 8.0),
            clients=(1, 8, 32),
            read_clients=8,
            pool=8_000 if quick else 40_000,
            shipping_pool=4_000 if quick else 20_000,
            scaling_pool=1_000 if quick else 4_000,
            burst=args.burst or (300 if quick else 2_000),
            reconcile_sizes=(1_000, 10_000, 100_000) if quick else (10_000, 100_000, 1_000_000),
            # One gthread process per core measured best here (2 beat 4 by ~1.5x at 8 clients: 16
            # threads in 4 GILs on 2 cores mostly wait for each other).
            web_concurrency=args.web_concurrency or max(2, cpus),
            phases=tuple(args.only.split(",")) if args.only else PHASES,
            out_dir=Path(args.out),
            profile=bool(args.profile),
            worker_concurrency=args.worker_concurrency,
            worker_pool=args.worker_pool,
        )


def log(message: str) -> None:
    print(f"[bench {datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


class Bench:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        base_db = os.environ.get("DATABASE_URL")
        base_redis = os.environ.get("REDIS_URL")
        if not base_db or not base_redis:
            raise SystemExit("DATABASE_URL and REDIS_URL must be set (make bench starts embedded ones)")
        self.base_db = base_db
        self.db_url = seed.with_database(base_db, "oms_bench")
        self.recon_url = seed.with_database(base_db, "oms_bench_recon")
        self.redis_url = re.sub(r"(/\d+)?$", f"/{REDIS_DB}", base_redis.rstrip("/"), count=1)
        self.workdir = ROOT / "instance" / "bench"
        self.web_port, self.floor_port = free_port(), free_port()
        self.sandbox_port, self.smtp_port = free_port(), free_port()
        self.env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "DATABASE_URL": self.db_url,
            "REDIS_URL": self.redis_url,
            "APP_ENV": "production",
            "SECRET_KEY": secrets.token_hex(32),
            "METRICS_TOKEN": secrets.token_hex(16),
            "STRIPE_WEBHOOK_SECRET": "whsec_sandbox",
            "PAYMENT_DEFAULT_TOKEN": "pm_card_visa",
            "PORT": str(self.web_port),
            "WEB_CONCURRENCY": str(plan.web_concurrency),
            "STRIPE_API_BASE": f"http://127.0.0.1:{self.sandbox_port}",
            "SMTP_URL": f"smtp://127.0.0.1:{self.smtp_port}",
            "CELERY_BEAT_SCHEDULE": str(self.workdir / "celerybeat-schedule"),
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
        for name in ("TEST_DATABASE_URL", "TEST_REDIS_URL", "FLASK_APP", "WORKER_CONCURRENCY"):
            self.env.pop(name, None)
        if plan.worker_concurrency:
            self.env["WORKER_CONCURRENCY"] = str(plan.worker_concurrency)
        self.procs = Processes(self.workdir, self.env)
        self.results: dict[str, Any] = {}
        self.files: dict[str, Path] = {}
        self.measure_id = 0
        self.app: Any = None

    # ---- setup -------------------------------------------------------------------------------------
    def setup(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for old in self.workdir.glob("*.log"):
            old.unlink()
        where = seed.make_url(self.base_db)
        log(f"database oms_bench on {where.host or where.query.get('host')}; redis db {REDIS_DB}")
        seed.recreate_database(self.base_db, "oms_bench")
        redis.Redis.from_url(self.redis_url).flushdb()
        self.release(self.db_url)
        from app.adapters.passwords import hash_password

        password_hash = hash_password(seed.BENCH_PASSWORD)
        started = time.monotonic()
        with seed.connect(self.db_url) as conn:
            seed.install_helpers(conn)
            seed.seed_products(conn, PRODUCTS)
            seed.seed_users(conn, 0, self.plan.pool, password_hash)
            seed.seed_users(conn, L10_FIRST, self.plan.scaling_pool, password_hash)
            seed.seed_users(conn, L50_FIRST, self.plan.scaling_pool, password_hash)
            seed.fill_carts(conn, 0, self.plan.pool, 1, PRODUCTS)
            seed.fill_carts(conn, L10_FIRST, self.plan.scaling_pool, 10, PRODUCTS)
            seed.fill_carts(conn, L50_FIRST, self.plan.scaling_pool, 50, PRODUCTS)
        log(
            f"seeded {PRODUCTS} products, {self.plan.pool + 2 * self.plan.scaling_pool} users and carts "
            f"in {time.monotonic() - started:.1f}s"
        )

        from app import create_app

        self.app = create_app(
            {
                "DATABASE_URL": self.db_url,
                "REDIS_URL": self.redis_url,
                "LOG_LEVEL": "WARNING",
                "APP_ENV": "production",
                "SECRET_KEY": self.env["SECRET_KEY"],
                "METRICS_TOKEN": self.env["METRICS_TOKEN"],
                "STRIPE_WEBHOOK_SECRET": self.env["STRIPE_WEBHOOK_SECRET"],
                "PAYMENT_DEFAULT_TOKEN": "pm_card_visa",
            }
        )
        started = time.monotonic()
        self.files["tokens"] = seed.write_tokens(self.app, self.workdir / "users.tsv", 0, self.plan.pool)
        self.files["tokens10"] = seed.write_tokens(
            self.app, self.workdir / "users10.tsv", L10_FIRST, self.plan.scaling_pool
        )
        self.files["tokens50"] = seed.write_tokens(
            self.app, self.workdir / "users50.tsv", L50_FIRST, self.plan.scaling_pool
        )
        log(f"signed access tokens in {time.monotonic() - started:.1f}s")
        self.capture()

    def release(self, database_url: str) -> None:
        subprocess.run(
            ["sh", "-c", self.procs.lines["release"]],
            cwd=ROOT,
            env={**self.env, "DATABASE_URL": database_url},
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=300,
        )

    def capture(self) -> None:
        """Record the SQL of one POST /orders (1, 10, 50 lines) and of the two reads."""
        from app.extensions import db

        client = self.app.test_client()
        users = self.token_lines("tokens")
        with self.app.app_context():
            engine = db.engine

        def checkout(line: list[str], key: str) -> Any:
            uid, cid, token = line
            return client.post(
                "/orders",
                json={"userId": uid, "cartId": cid},
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
            )

        warm = checkout(users[-1], "bench-capture-warmup")
        if warm.status_code != 201:
            raise RuntimeError(f"POST /orders answered {warm.status_code}: {warm.get_data(as_text=True)}")
        facts: dict[str, Any] = {}
        capture_n = self.plan.pool - 2
        with seed.connect(self.db_url) as conn:
            before = conn.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()[0]
        key = "bench-capture-key"
        started_at = datetime.now(UTC)
        with capture.SqlRecorder(engine) as recorder:
            response = checkout(users[capture_n], key)
        if response.status_code != 201:
            raise RuntimeError(
                f"POST /orders answered {response.status_code}: {response.get_data(as_text=True)}"
            )
        order_id = response.get_json()["orderId"]
        with seed.connect(self.db_url) as conn:
            outbox_ids = [r[0] for r in conn.execute("SELECT id FROM outbox WHERE id > %s", (before,))]
        script, facts["checkout"] = capture.pgbench_script(
            capture.CheckoutCapture(recorder.steps, capture_n, PRODUCTS, key, started_at, outbox_ids)
        )
        facts["checkout"].update(capture.statement_count(recorder.steps))
        if not facts["checkout"]["outbox_ids_mapped"]:
            raise RuntimeError("the checkout's outbox ids could not be mapped to pgbench variables")
        if facts["checkout"]["unmapped_bench_ids"]:
            raise RuntimeError(
                f"unexpected ids in the checkout SQL: {facts['checkout']['unmapped_bench_ids']}"
            )
        self.files["pgbench"] = self.workdir / "checkout.pgbench.sql"
        self.files["pgbench"].write_text(script)

        for lines, name in ((10, "tokens10"), (50, "tokens50")):
            line = self.token_lines(name)[-1]
            with capture.SqlRecorder(engine) as recorder:
                response = checkout(line, f"bench-capture-{lines}")
            if response.status_code != 201:
                raise RuntimeError(f"{lines}-line POST /orders answered {response.status_code}")
            facts[f"checkout_{lines}_lines"] = capture.statement_count(recorder.steps)

        floor: dict[str, Any] = {}
        product_id = seed.bench_uuid(seed.PRODUCT, 7)
        reads = (
            ("product", f"/products/{product_id}", product_id, None),
            ("order", f"/orders/{order_id}", order_id, users[capture_n][2]),
        )
        for name, path, ident, token in reads:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            client.get(path, headers=headers)  # warm
            with capture.SqlRecorder(engine) as recorder:
                response = client.get(path, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"GET {path} answered {response.status_code}")
            import uuid as _uuid

            floor[name] = capture.floor_queries(recorder.steps, _uuid.UUID(str(ident)))
            facts[f"get_{name}"] = capture.statement_count(recorder.steps)
        self.files["floor"] = self.workdir / "floor_queries.json"
        self.files["floor"].write_text(json.dumps(floor, indent=2))
        with self.app.app_context():
            db.engine.dispose()
        self.results["sql"] = facts
        log(
            f"captured: POST /orders = {facts['checkout']['statements']} statements in "
            f"{facts['checkout']['transactions']} transactions; pgbench script {self.files['pgbench']}"
        )

    def token_lines(self, name: str) -> list[list[str]]:
        return [ln.rstrip("\n").split("\t") for ln in self.files[name].open()]

    # ---- processes ---------------------------------------------------------------------------------
    def start_stack(self) -> None:
        self.procs.start(
            "payments", f"flask --app app payments-sandbox --host 127.0.0.1 --port {self.sandbox_port}"
        )
        self.procs.start("smtp", f"python -m app.devtools.smtp_sink --host 127.0.0.1 --port {self.smtp_port}")
        self.procs.start_procfile("web")
        self.procs.start_procfile("beat")
        self.procs.wait_port("payments", self.sandbox_port)
        self.procs.wait_port("smtp", self.smtp_port)
        self.procs.wait_http("web", f"{self.web_url}/readyz", timeout=90)
        log(
            f"web (gunicorn, WEB_CONCURRENCY={self.plan.web_concurrency}), beat, payment sandbox "
            "and SMTP sink up"
        )

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start_floor(self) -> None:
        self.procs.start(
            "floor",
            "gunicorn 'bench.floor_app:create_app()' --config gunicorn.conf.py",
            env={
                "PORT": str(self.floor_port),
                "FLOOR_DATABASE_URL": seed.libpq_url(self.db_url),
                "FLOOR_QUERIES": str(self.files["floor"]),
            },
        )
        self.procs.wait_http("floor", f"http://127.0.0.1:{self.floor_port}/healthz", timeout=60)

    def close(self) -> None:
        self.procs.stop_all()

    # ---- helpers -----------------------------------------------------------------------------------
    def next_run_id(self) -> int:
        self.measure_id += 1
        return self.measure_id

    def refill(self, first: int, count: int, lines: int) -> None:
        time.sleep(1)  # let requests that were still running when the load generator stopped finish
        with seed.connect(self.db_url) as conn:
            seed.fill_carts(conn, first, count, lines, PRODUCTS)
            conn.execute("VACUUM (ANALYZE) cart_items")

    def wrk_checkout(self, tokens: str, clients: int, duration: float) -> loadgen.Measurement:
        run_id = self.next_run_id()
        with CpuMeter(self.procs, "web") as cpu:
            m = loadgen.run_wrk(
                self.web_url,
                "checkout.lua",
                [str(self.files[tokens]), f"r{run_id}", "measure", str(run_id * 7919)],
                clients=clients,
                duration_s=duration,
                ok_statuses=("201",),
                expected_statuses=("409",),
            )
        m.statuses["_cpu"] = cpu.summary()  # type: ignore[assignment]
        return m

    def pgbench(self, clients: int, duration: float) -> loadgen.Measurement:
        m = loadgen.run_pgbench(
            seed.libpq_url(self.db_url),
            self.files["pgbench"],
            clients=clients,
            duration_s=duration,
            variables={
                "k": 0,
                "first": 0,
                "pool": self.plan.pool,
                "nprod": PRODUCTS,
                "run": self.next_run_id(),
            },
        )
        m.reused = max(0, m.completed - self.plan.pool)
        return m

    # ---- phases ------------------------------------------------------------------------------------
    def warm_up(self) -> None:
        self.refill(0, self.plan.pool, 1)
        m = self.wrk_checkout("tokens", 8, 3)
        log(f"warm-up: {m.per_second} orders/s, statuses {m.statuses}")

    def phase_checkout(self) -> None:
        """The limit (pgbench) and POST /orders (wrk), interleaved, at each client count."""
        do_limit, do_http = "limit" in self.plan.phases, "checkout" in self.plan.phases
        limit: dict[int, list[loadgen.Measurement]] = {c: [] for c in self.plan.clients}
        http: dict[int, list[loadgen.Measurement]] = {c: [] for c in self.plan.clients}
        for run in range(self.plan.runs):
            for clients in self.plan.clients:
                if do_limit:
                    self.refill(0, self.plan.pool, 1)
                    m = self.pgbench(clients, self.plan.duration)
                    limit[clients].append(m)
                    log(
                        f"run {run + 1} limit    c={clients:<3} {m.per_second:8.1f} tx/s  "
                        f"p50 {m.p50_ms:6.2f} ms  p99 {m.p99_ms:6.2f} ms"
                    )
                if do_http:
                    self.refill(0, self.plan.pool, 1)
                    m = self.wrk_checkout("tokens", clients, self.plan.duration)
                    http[clients].append(m)
                    log(
                        f"run {run + 1} checkout c={clients:<3} {m.per_second:8.1f} orders/s  "
                        f"p50 {m.p50_ms:6.2f} ms  p99 {m.p99_ms:6.2f} ms  statuses {m.statuses}"
                    )
        if do_http and self.plan.profile:
            self.refill(0, self.plan.pool, 1)
            with PySpy(
                self.procs,
                "web",
                self.workdir / "profile_checkout.txt",
                self.plan.duration,
                self.results,
            ):
                self.wrk_checkout("tokens", 8, self.plan.duration)
        if do_limit:
            self.results["limit"] = {str(c): loadgen.median_of(runs) for c, runs in limit.items()}
        if do_http:
            self.results["checkout"] = {str(c): loadgen.median_of(runs) for c, runs in http.items()}

    def phase_reads(self) -> None:
        """GET /products/{id} and GET /orders/{id}: the stack vs the framework floor."""
        tokens = {line[0]: line[2] for line in self.token_lines("tokens")}
        with seed.connect(self.db_url) as conn:
            rows = conn.execute(
                "SELECT id, user_id FROM orders WHERE deleted_at IS NULL AND id::text NOT LIKE '000%%' "
                "ORDER BY random() LIMIT 2000"
            ).fetchall()
        orders = [(str(oid), tokens[str(uid)]) for oid, uid in rows if str(uid) in tokens]
        if not orders:
            raise RuntimeError("no orders to read: run the checkout phase first")
        files = {}
        for target in ("stack", "floor"):
            products = self.workdir / f"get_products_{target}.tsv"
            products.write_text(
                "".join(f"/products/{seed.bench_uuid(seed.PRODUCT, p)}\t-\n" for p in range(PRODUCTS))
            )
            order_file = self.workdir / f"get_orders_{target}.tsv"
            order_file.write_text(
                "".join(f"/orders/{oid}\t{tok if target == 'stack' else '-'}\n" for oid, tok in orders)
            )
            files[("product", target)] = products
            files[("order", target)] = order_file
        self.start_floor()
        urls = {"stack": self.web_url, "floor": f"http://127.0.0.1:{self.floor_port}"}
        names = {"stack": "web", "floor": "floor"}
        found: dict[tuple[str, str], list[loadgen.Measurement]] = {key: [] for key in files}
        try:
            for target in ("stack", "floor"):  # warm both
                for what in ("product", "order"):
                    loadgen.run_wrk(
                        urls[target], "get.lua", [str(files[(what, target)])], clients=8, duration_s=2
                    )
            for run in range(self.plan.runs):
                for what in ("product", "order"):
                    for target in ("stack", "floor"):
                        with CpuMeter(self.procs, names[target]) as cpu:
                            m = loadgen.run_wrk(
                                urls[target],
                                "get.lua",
                                [str(files[(what, target)])],
                                clients=self.plan.read_clients,
                                duration_s=self.plan.duration,
                            )
                        m.statuses["_cpu"] = cpu.summary()  # type: ignore[assignment]
                        found[(what, target)].append(m)
                        log(
                            f"run {run + 1} GET {what:<7} {target:<5} {m.per_second:8.1f} req/s  "
                            f"p50 {m.p50_ms:6.2f} ms  p99 {m.p99_ms:6.2f} ms  statuses {m.statuses}"
                        )
            if self.plan.profile:
                for what in ("product", "order"):
                    with PySpy(
                        self.procs,
                        "web",
                        self.workdir / f"profile_get_{what}.txt",
                        self.plan.duration,
                        self.results,
                    ):
                        loadgen.run_wrk(
                            urls["stack"],
                            "get.lua",
                            [str(files[(what, "stack")])],
                            clients=8,
                            duration_s=self.plan.duration,
                        )
        finally:
            self.procs.stop("floor")
        self.results["reads"] = {
            what: {target: loadgen.median_of(found[(what, target)]) for target in ("stack", "floor")}
            for what in ("product", "order")
        }

    def worker_setup(self) -> dict[str, Any]:
        """The pool and concurrency of the Procfile's ``worker`` line here (the no-op floor runs
        with the same: "at the same concurrency")."""
        from app.config import Settings

        concurrency = int(self.env.get("WORKER_CONCURRENCY") or Settings.WORKER_CONCURRENCY)
        return {"concurrency": concurrency, "pool": self.plan.worker_pool or "prefork"}

    def worker_command(self) -> str:
        pool = self.plan.worker_pool
        return self.procs.lines["worker"] + (f" --pool {pool}" if pool else "")

    def phase_shipments(self) -> None:
        """Admin POST /orders/{id}/shipments, each request a different paid order, vs the limit:
        pgbench replaying the SQL one such request issued, interleaved at 8 clients."""
        pool, clients = self.plan.shipping_pool, self.plan.read_clients
        admin_token = self.seed_shipping(pool)
        script, facts = self.capture_shipment(pool, admin_token)
        self.results.setdefault("sql", {})["shipment"] = facts
        orders = self.workdir / "shipping_orders.txt"
        orders.write_text("".join(f"{seed.bench_uuid(seed.ORDER, n)}\n" for n in range(pool)))
        self.unship(pool)
        self.wrk_shipments(orders, admin_token, clients, 2)  # warm the web tier
        limit: list[loadgen.Measurement] = []
        http: list[loadgen.Measurement] = []
        for run in range(self.plan.runs):
            self.unship(pool)
            m = loadgen.run_pgbench(
                seed.libpq_url(self.db_url),
                script,
                clients=clients,
                duration_s=self.plan.duration,
                variables={
                    "k": 0,
                    "first": 0,
                    "pool": pool,
                    "nprod": PRODUCTS,
                    "users": self.plan.pool,
                    "run": self.next_run_id(),
                },
            )
            m.reused = max(0, m.completed - pool)
            limit.append(m)
            log(
                f"run {run + 1} shipments limit c={clients} {m.per_second:8.1f} tx/s  "
                f"p50 {m.p50_ms:6.2f} ms  p99 {m.p99_ms:6.2f} ms"
            )
            self.unship(pool)
            m = self.wrk_shipments(orders, admin_token, clients, self.plan.duration)
            http.append(m)
            log(
                f"run {run + 1} shipments stack c={clients} {m.per_second:8.1f} req/s  "
                f"p50 {m.p50_ms:6.2f} ms  p99 {m.p99_ms:6.2f} ms  statuses {m.statuses}"
            )
        if self.plan.profile:
            self.unship(pool)
            with PySpy(
                self.procs, "web", self.workdir / "profile_shipments.txt", self.plan.duration, self.results
            ):
                self.wrk_shipments(orders, admin_token, clients, self.plan.duration)
        self.results["shipments"] = {
            "pool": pool,
            "limit": loadgen.median_of(limit),
            "stack": loadgen.median_of(http),
        }

    def seed_shipping(self, pool: int) -> str:
        """Paid, unshipped orders ``0 .. pool + 1`` (the last two for the capture) and the admin who
        ships them; returns the admin's access token."""
        from app.adapters.passwords import hash_password
        from app.api.security import issue_token

        with seed.connect(self.db_url) as conn:
            seed.seed_users(conn, SHIPPING_ADMIN, 1, hash_password(seed.BENCH_PASSWORD))
            conn.execute(
                "UPDATE users SET role = 'admin' WHERE id = %s", (seed.bench_uuid(seed.USER, SHIPPING_ADMIN),)
            )
            seed.seed_paid_orders(conn, 0, pool + 2, self.plan.pool, PRODUCTS)
        admin = SimpleNamespace(id=seed.bench_uuid(seed.USER, SHIPPING_ADMIN), role="admin", token_version=1)
        with self.app.app_context():
            token, _ = issue_token(admin)  # type: ignore[arg-type]
        log(f"seeded {pool + 2} paid orders to ship")
        return str(token)

    def capture_shipment(self, pool: int, admin_token: str) -> tuple[Path, dict[str, Any]]:
        """Record the SQL of one admin POST /orders/{id}/shipments (after one to warm up) and
        write it as a pgbench script."""
        from app.extensions import db

        client = self.app.test_client()
        with self.app.app_context():
            engine = db.engine

        def ship(n: int, key: str) -> Any:
            response = client.post(
                f"/orders/{seed.bench_uuid(seed.ORDER, n)}/shipments",
                json={"carrier": "UPS", "trackingNumber": "1Z999AA10123456784"},
                headers={"Authorization": f"Bearer {admin_token}", "Idempotency-Key": key},
            )
            if response.status_code != 201:
                raise RuntimeError(
                    f"POST /orders/{{id}}/shipments answered {response.status_code}: "
                    f"{response.get_data(as_text=True)}"
                )
            return response

        ship(pool, "bench-capture-shipment-warmup")
        key = "bench-capture-shipment"
        with seed.connect(self.db_url) as conn:
            before = conn.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()[0]
        started_at = datetime.now(UTC)
        with capture.SqlRecorder(engine) as recorder:
            ship(pool + 1, key)
        with seed.connect(self.db_url) as conn:
            outbox_ids = [r[0] for r in conn.execute("SELECT id FROM outbox WHERE id > %s", (before,))]
        script, facts = capture.shipment_script(
            capture.ShipmentCapture(
                recorder.steps,
                order_n=pool + 1,
                users=self.plan.pool,
                products=PRODUCTS,
                admin_n=SHIPPING_ADMIN,
                idempotency_key=key,
                started_at=started_at,
                outbox_ids=outbox_ids,
            )
        )
        facts.update(capture.statement_count(recorder.steps))
        if not facts["outbox_ids_mapped"] or facts["unmapped_bench_ids"]:
            raise RuntimeError(f"the shipment's SQL could not be replayed: {facts}")
        path = self.workdir / "shipment.pgbench.sql"
        path.write_text(script)
        with self.app.app_context():
            db.engine.dispose()
        log(
            f"captured: POST /orders/{{id}}/shipments = {facts['statements']} statements in "
            f"{facts['transactions']} transactions; pgbench script {path}"
        )
        return path, facts

    def unship(self, pool: int) -> None:
        time.sleep(1)  # let requests still running when the load generator stopped finish
        with seed.connect(self.db_url) as conn:
            seed.unship_paid_orders(conn, 0, pool)

    def wrk_shipments(self, orders: Path, token: str, clients: int, duration: float) -> loadgen.Measurement:
        run_id = self.next_run_id()
        with CpuMeter(self.procs, "web") as cpu:
            m = loadgen.run_wrk(
                self.web_url,
                "shipments.lua",
                [str(orders), f"s{run_id}", token],
                clients=clients,
                duration_s=duration,
                ok_statuses=("201",),
            )
        m.statuses["_cpu"] = cpu.summary()  # type: ignore[assignment]
        return m

    def phase_payments(self) -> None:
        """A burst of orders placed through ONE web process (gunicorn, WEB_CONCURRENCY=1) with no
        worker running, then ONE worker (the Procfile line) drains it: orders accepted per second by
        one web process vs payments drained per second by one worker, and the no-op floor."""
        r = redis.Redis.from_url(self.redis_url)
        payments: list[dict[str, Any]] = []
        noops: list[dict[str, Any]] = []
        bursts: list[dict[str, Any]] = []
        n = self.plan.burst
        burst_file = self.workdir / "burst_users.tsv"
        burst_file.write_text("".join("\t".join(line) + "\n" for line in self.token_lines("tokens")[:n]))
        self.files["burst"] = burst_file
        one_port = free_port()
        self.procs.start(
            "web-one", self.procs.lines["web"], env={"PORT": str(one_port), "WEB_CONCURRENCY": "1"}
        )
        self.procs.wait_http("web-one", f"http://127.0.0.1:{one_port}/readyz", timeout=90)
        setup = self.worker_setup()
        for run in range(self.plan.runs):
            with seed.connect(self.db_url) as conn:
                conn.execute(
                    "UPDATE payments SET status = 'FAILED', failure_reason = 'BENCH_DISCARDED' "
                    "WHERE status = 'PENDING'"
                )
            r.flushdb()
            self.refill(0, n, 1)
            started = time.monotonic()
            settled = Settled(self.pending_payments, n)
            with CpuMeter(self.procs, "web-one") as cpu:
                loadgen.run_wrk_until(
                    f"http://127.0.0.1:{one_port}",
                    "checkout.lua",
                    [str(burst_file), f"r{self.next_run_id()}", "burst"],
                    clients=8,
                    done=settled,
                    timeout_s=max(120.0, n / 5),
                )
            placed_s = (settled.reached or settled.changed) - started
            pending = wait_for(
                lambda: self.pending_payments() or None, 30, "the burst's payments", interval=0.5
            )
            queued = sum(int(r.llen(name)) for name in WORKER_QUEUES.split(","))
            bursts.append(
                {
                    "orders": pending,
                    "seconds": round(placed_s, 2),
                    "per_second": round(pending / placed_s, 1),
                    **cpu.summary(),
                }
            )
            log(
                f"run {run + 1} burst: {pending} PENDING payments placed by one web process in "
                f"{placed_s:.1f}s ({bursts[-1]['per_second']:.1f} orders/s), {queued} messages queued"
            )
            result = self.drain_payments(pending, profile=self.plan.profile and run == 0)
            result["queued_before"] = queued
            result["vs_web"] = round(result["per_second"] / bursts[-1]["per_second"], 3)
            payments.append(result)
            log(
                f"run {run + 1} payments drained: {result['per_second']:.1f}/s "
                f"({result['tasks']} tasks, {result['tasks_per_second']:.1f} tasks/s, worker "
                f"{result['process_cores']} cores, sandbox {result['sandbox_cores']}, "
                f"machine {result['machine_cores']}); "
                f"{result['vs_web']:.2f}x one web process's checkouts"
            )
            noops.append(self.drain_noop(n, setup["pool"], setup["concurrency"]))
            log(
                f"run {run + 1} bare celery no-op ({setup['pool']} x{setup['concurrency']}): "
                f"{noops[-1]['per_second']:.1f} tasks/s"
            )
        self.procs.stop("web-one")
        self.results["payments"] = {
            "burst": n,
            "worker": setup,
            "web_one": summarise(bursts, ("per_second", "seconds", "process_cores")),
            "payments": summarise(
                payments, ("per_second", "tasks_per_second", "seconds", "vs_web", "process_cores")
            ),
            "noop": summarise(noops, ("per_second", "seconds")),
        }

    def pending_payments(self) -> int:
        with seed.connect(self.db_url) as conn:
            return int(conn.execute("SELECT count(*) FROM payments WHERE status = 'PENDING'").fetchone()[0])

    def drain_payments(self, pending: int, profile: bool = False) -> dict[str, Any]:
        name = f"worker-{self.next_run_id()}"
        self.procs.start(name, self.worker_command())
        spy = (
            PySpy(self.procs, name, self.workdir / "profile_worker.txt", 30, self.results)
            if profile
            else None
        )
        try:
            self.procs.wait_log(name, " ready.", timeout=120)
            if spy is not None:
                spy.__enter__()
            started = time.monotonic()
            deadline = started + max(600.0, pending / 2)
            with CpuMeter(self.procs, name) as cpu, CpuMeter(self.procs, "payments") as gateway:
                while self.pending_payments() > 0:
                    self.procs.check_alive(name)
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"payments not drained after {deadline - started:.0f}s")
                    time.sleep(0.2)
            seconds = time.monotonic() - started
            tasks = self.procs.log(name).count('"task_finished"')
        finally:
            if spy is not None:
                spy.__exit__()
            self.procs.stop(name)
        with seed.connect(self.db_url) as conn:
            statuses = dict(
                conn.execute(
                    "SELECT status, count(*) FROM payments "
                    "WHERE failure_reason IS DISTINCT FROM 'BENCH_DISCARDED' "
                    "AND updated_at > now() - interval '1 hour' GROUP BY status"
                ).fetchall()
            )
        return {
            "payments": pending,
            "seconds": round(seconds, 2),
            "per_second": round(pending / seconds, 1),
            "tasks": tasks,
            "tasks_per_second": round(tasks / seconds, 1),
            "statuses": statuses,
            **cpu.summary(),
            "sandbox_cores": gateway.summary()["process_cores"],
        }

    def drain_noop(self, count: int, pool: str = "prefork", concurrency: int = 2) -> dict[str, Any]:
        from bench import noop_tasks

        noop_tasks.app.conf.broker_url = self.redis_url
        r = redis.Redis.from_url(self.redis_url)
        r.delete(noop_tasks.QUEUE)
        with noop_tasks.app.connection_for_write() as conn, conn.Producer() as producer:
            for i in range(count):
                noop_tasks.noop.apply_async((i,), producer=producer)
        name = f"noop-{self.next_run_id()}"
        self.procs.start(
            name,
            f"celery --app bench.noop_tasks worker --loglevel INFO --pool {pool} --concurrency {concurrency} "
            f"--queues {noop_tasks.QUEUE} --without-gossip --without-mingle",
        )
        try:
            self.procs.wait_log(name, " ready.", timeout=120)
            started = time.monotonic()
            deadline = started + 600

            def remaining() -> int:
                # Unacked entries are [message, exchange, routing key]; count the no-op's own only
                # (a task the app's worker left unacked when it was stopped is not ours to wait for).
                unacked = sum(1 for raw in r.hvals("unacked") if json.loads(raw)[2] == noop_tasks.QUEUE)
                return int(r.llen(noop_tasks.QUEUE)) + unacked

            while remaining() > 0:
                self.procs.check_alive(name)
                if time.monotonic() > deadline:
                    raise TimeoutError("no-op tasks not drained")
                time.sleep(0.05)
            seconds = time.monotonic() - started
        finally:
            self.procs.stop(name)
        return {"tasks": count, "seconds": round(seconds, 2), "per_second": round(count / seconds, 1)}

    def phase_webhooks(self) -> None:
        """N deliveries due with no webhook worker running, then one (concurrency 2) drains them;
        the floor: N bare Celery tasks each making the same POST."""
        from app.adapters.queue import DELIVER_WEBHOOK, WEBHOOKS_QUEUE, send_task
        from app.domain.webhooks import new_secret, signature_header
        from bench import webhook_floor

        n = self.plan.burst
        port = free_port()
        self.procs.start("receiver", f"python -m bench.webhook_floor receive --port {port}")
        self.procs.wait_port("receiver", port)
        url = f"http://127.0.0.1:{port}/hooks"
        r = redis.Redis.from_url(self.redis_url)
        ours: list[dict[str, Any]] = []
        floors: list[dict[str, Any]] = []
        secret = new_secret()
        for run in range(self.plan.runs):
            r.delete(WEBHOOKS_QUEUE, webhook_floor.QUEUE)
            with seed.connect(self.db_url) as conn:
                conn.execute("TRUNCATE webhook_deliveries, webhook_messages, webhook_endpoints")
                endpoint = conn.execute(
                    "INSERT INTO webhook_endpoints (id, url, events, description, enabled, secret, "
                    "consecutive_failures, created_at, updated_at) VALUES (gen_random_uuid(), %s, "
                    "'[\"*\"]', 'bench', true, %s, 0, now(), now()) RETURNING id",
                    (url, secret),
                ).fetchone()[0]
                conn.execute(
                    "INSERT INTO webhook_messages (id, event_type, data_kind, data, occurred_at) "
                    "SELECT gen_random_uuid(), 'order.paid', 'event', jsonb_build_object('n', g), now() "
                    "FROM generate_series(1, %s) g",
                    (n,),
                )
                ids = [
                    str(row[0])
                    for row in conn.execute(
                        "INSERT INTO webhook_deliveries (id, endpoint_id, message_id, status, attempts, "
                        "retries_used, next_attempt_at, queued_at, created_at) SELECT gen_random_uuid(), "
                        "%s, id, 'PENDING', 0, 0, now(), now(), now() FROM webhook_messages RETURNING id",
                        (endpoint,),
                    )
                ]
            with self.app.app_context():
                for delivery_id in ids:
                    send_task(DELIVER_WEBHOOK, [delivery_id])
            ours.append(self.drain_webhooks(n, profile=self.plan.profile and run == 0))
            log(f"run {run + 1} webhook deliveries: {ours[-1]['per_second']:.1f}/s")
            body = '{"type":"order.paid","timestamp":"2026-12-02T06:00:00Z","data":{"n":1}}'
            headers = {
                "webhook-id": "msg_bench",
                "webhook-timestamp": "1764655200",
                "webhook-signature": signature_header("msg_bench", 1764655200, body, [secret]),
                "Content-Type": "application/json",
            }
            floors.append(self.drain_webhook_floor(n, url, headers, body))
            log(f"run {run + 1} bare celery POST: {floors[-1]['per_second']:.1f}/s")
        self.procs.stop("receiver")
        self.results["webhooks"] = {
            "deliveries": n,
            "webhooks": summarise(ours, ("per_second", "seconds")),
            "floor": summarise(floors, ("per_second", "seconds")),
        }

    def succeeded_deliveries(self) -> int:
        with seed.connect(self.db_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM webhook_deliveries WHERE status = 'SUCCEEDED'"
            ).fetchone()
            return int(row[0])

    def drain_webhooks(self, count: int, profile: bool = False) -> dict[str, Any]:
        name = f"webhooks-{self.next_run_id()}"
        # Loopback receiver: private addresses allowed, plain http (APP_ENV=development for that).
        self.procs.start(
            name,
            self.procs.lines["webhooks"],
            {"APP_ENV": "development", "WEBHOOK_ALLOW_PRIVATE_URLS": "true"},
        )
        spy = (
            PySpy(self.procs, name, self.workdir / "profile_webhooks.txt", 10, self.results)
            if profile
            else None
        )
        try:
            self.procs.wait_log(name, " ready.", timeout=120)
            if spy is not None:
                spy.__enter__()
            started = time.monotonic()
            deadline = started + max(600.0, count / 2)
            while self.succeeded_deliveries() < count:
                self.procs.check_alive(name)
                if time.monotonic() > deadline:
                    raise TimeoutError("webhook deliveries not drained")
                time.sleep(0.1)
            seconds = time.monotonic() - started
        finally:
            if spy is not None:
                spy.__exit__()
            self.procs.stop(name)
        return {"tasks": count, "seconds": round(seconds, 2), "per_second": round(count / seconds, 1)}

    def drain_webhook_floor(self, count: int, url: str, headers: dict[str, str], body: str) -> dict[str, Any]:
        from bench import webhook_floor

        webhook_floor.app.conf.broker_url = self.redis_url
        r = redis.Redis.from_url(self.redis_url)
        r.delete(webhook_floor.QUEUE)
        with webhook_floor.app.connection_for_write() as conn, conn.Producer() as producer:
            for _ in range(count):
                webhook_floor.webhook_post.apply_async((url, headers, body), producer=producer)
        name = f"webhook-floor-{self.next_run_id()}"
        self.procs.start(
            name,
            "celery --app bench.webhook_floor worker --loglevel INFO --concurrency 2 "
            f"--queues {webhook_floor.QUEUE} --without-gossip --without-mingle",
        )
        try:
            self.procs.wait_log(name, " ready.", timeout=120)
            started = time.monotonic()
            deadline = started + 600

            def remaining() -> int:
                unacked = sum(1 for raw in r.hvals("unacked") if json.loads(raw)[2] == webhook_floor.QUEUE)
                return int(r.llen(webhook_floor.QUEUE)) + unacked

            while remaining() > 0:
                self.procs.check_alive(name)
                if time.monotonic() > deadline:
                    raise TimeoutError("webhook floor tasks not drained")
                time.sleep(0.05)
            seconds = time.monotonic() - started
        finally:
            self.procs.stop(name)
        return {"tasks": count, "seconds": round(seconds, 2), "per_second": round(count / seconds, 1)}

    def phase_fanout(self) -> None:
        """The webhook fan-out with FANOUT_ENDPOINTS endpoints: outbox events dispatched by the
        product's own path (``dispatch.handle_message`` running ``webhooks.fan_out``: the message,
        one delivery per endpoint, their tasks published, the event marked processed), one event
        after another in this process; the floor writes the same rows from the same process with
        bare psycopg (one transaction: one INSERT … RETURNING for the message and the deliveries,
        the outbox row marked processed) and publishes as many bare Celery tasks."""
        from app.adapters.queue import WEBHOOKS_QUEUE
        from app.domain.events import ProductLowStock
        from app.services import webhooks
        from app.services.dispatch import handle_message
        from bench import webhook_floor

        n = max(50, self.plan.burst // 4)
        r = redis.Redis.from_url(self.redis_url)
        webhook_floor.app.conf.broker_url = self.redis_url
        ours: list[dict[str, Any]] = []
        floors: list[dict[str, Any]] = []
        registry = {ProductLowStock: [webhooks.fan_out]}
        for run in range(self.plan.runs):
            for target in ("fanout", "floor"):
                ids = self.fanout_events(n)
                r.delete(WEBHOOKS_QUEUE, webhook_floor.QUEUE)
                started = time.monotonic()
                if target == "fanout":
                    with self.app.app_context():
                        for outbox_id in ids:
                            handle_message(outbox_id, registry)
                else:
                    self.fanout_floor(ids)
                seconds = time.monotonic() - started
                with seed.connect(self.db_url) as conn:
                    made = int(conn.execute("SELECT count(*) FROM webhook_deliveries").fetchone()[0])
                if made != n * FANOUT_ENDPOINTS:
                    raise RuntimeError(f"{target}: {made} deliveries, expected {n * FANOUT_ENDPOINTS}")
                result = {
                    "events": n,
                    "seconds": round(seconds, 2),
                    "events_per_second": round(n / seconds, 1),
                    "deliveries_per_second": round(made / seconds, 1),
                }
                (ours if target == "fanout" else floors).append(result)
                log(
                    f"run {run + 1} fan-out {target:<6} {result['events_per_second']:7.1f} events/s "
                    f"({result['deliveries_per_second']:.0f} deliveries/s, {FANOUT_ENDPOINTS} endpoints)"
                )
        r.delete(WEBHOOKS_QUEUE, webhook_floor.QUEUE)
        self.results["fanout"] = {
            "events": n,
            "endpoints": FANOUT_ENDPOINTS,
            "fanout": summarise(ours, ("events_per_second", "deliveries_per_second", "seconds")),
            "floor": summarise(floors, ("events_per_second", "deliveries_per_second", "seconds")),
        }

    def fanout_events(self, n: int) -> list[int]:
        """No deliveries yet, FANOUT_ENDPOINTS enabled endpoints on every type, n ProductLowStock
        events in the outbox (mapped to product.low_stock; its data needs no rendering)."""
        with seed.connect(self.db_url) as conn:
            conn.execute("TRUNCATE webhook_deliveries, webhook_messages, webhook_endpoints")
            conn.execute(
                "INSERT INTO webhook_endpoints (id, url, events, description, enabled, secret, "
                "consecutive_failures, created_at, updated_at) SELECT gen_random_uuid(), "
                "'http://127.0.0.1:9/hook' || g, '[\"*\"]', 'bench', true, %s, 0, now(), now() "
                "FROM generate_series(1, %s) g",
                (secrets.token_hex(16), FANOUT_ENDPOINTS),
            )
            return [
                int(row[0])
                for row in conn.execute(
                    "INSERT INTO outbox (event_type, payload, created_at, published_at, publish_attempts) "
                    "SELECT 'ProductLowStock', jsonb_build_object('product_id', gen_random_uuid()::text, "
                    "'product_name', 'Bench ' || g, 'stock', 1, 'low_stock_threshold', 5), now(), now(), 0 "
                    "FROM generate_series(1, %s) g RETURNING id",
                    (n,),
                )
            ]

    def fanout_floor(self, outbox_ids: list[int]) -> None:
        from bench import webhook_floor

        with (
            seed.connect(self.db_url) as conn,
            webhook_floor.app.connection_for_write() as broker,
            broker.Producer() as producer,
        ):
            for outbox_id in outbox_ids:
                with conn.transaction():
                    payload = conn.execute(
                        "SELECT payload FROM outbox WHERE id = %s", (outbox_id,)
                    ).fetchone()[0]
                    created = conn.execute(_FLOOR_FAN_OUT, (outbox_id, json.dumps(payload))).fetchall()
                    conn.execute("UPDATE outbox SET processed_at = now() WHERE id = %s", (outbox_id,))
                for (delivery_id,) in created:
                    webhook_floor.webhook_post.apply_async(("", {}, str(delivery_id)), producer=producer)

    def phase_stripe_webhook(self) -> None:
        """POST /webhooks/stripe: signed payloads (Stripe's own helper signs them), each event id
        distinct, vs bare Flask doing only ``stripe.Webhook.construct_event`` (bench/stripe_floor.py)
        under the same gunicorn settings, at ``read_clients`` connections."""
        secret = self.env["STRIPE_WEBHOOK_SECRET"]
        port = free_port()
        self.procs.start(
            "stripe-floor",
            "gunicorn 'bench.stripe_floor:create_app()' --config gunicorn.conf.py",
            env={"PORT": str(port), "STRIPE_WEBHOOK_SECRET": secret},
        )
        urls = {"stack": self.web_url, "floor": f"http://127.0.0.1:{port}"}
        names = {"stack": "web", "floor": "stripe-floor"}
        found: dict[str, list[loadgen.Measurement]] = {"stack": [], "floor": []}
        try:
            self.procs.wait_http("stripe-floor", f"{urls['floor']}/healthz", timeout=60)
            for run in range(self.plan.runs):
                for target in ("stack", "floor"):
                    events = self.signed_stripe_events(secret, f"r{run}{target}", 20_000)
                    with CpuMeter(self.procs, names[target]) as cpu:
                        m = loadgen.run_wrk(
                            urls[target],
                            "post_signed.lua",
                            [str(events)],
                            clients=self.plan.read_clients,
                            duration_s=self.plan.duration,
                            ok_statuses=("200",),
                        )
                    m.statuses["_cpu"] = cpu.summary()  # type: ignore[assignment]
                    found[target].append(m)
                    log(
                        f"run {run + 1} POST /webhooks/stripe {target:<5} {m.per_second:8.1f} req/s  "
                        f"p50 {m.p50_ms:6.2f} ms  p99 {m.p99_ms:6.2f} ms  statuses {m.statuses}"
                    )
            if self.plan.profile:
                events = self.signed_stripe_events(secret, "profile", 20_000)
                with PySpy(
                    self.procs,
                    "web",
                    self.workdir / "profile_stripe_webhook.txt",
                    self.plan.duration,
                    self.results,
                ):
                    loadgen.run_wrk(
                        urls["stack"],
                        "post_signed.lua",
                        [str(events)],
                        clients=self.plan.read_clients,
                        duration_s=self.plan.duration,
                    )
        finally:
            self.procs.stop("stripe-floor")
        self.results["stripe_webhook"] = {t: loadgen.median_of(found[t]) for t in ("stack", "floor")}

    def signed_stripe_events(self, secret: str, tag: str, count: int) -> Path:
        """``count`` payment_intent.succeeded events for unknown payments (the event id is recorded,
        the payment looked up, nothing else changes), signed now with Stripe's helper."""
        import uuid

        import stripe

        stamp = int(time.time())
        path = self.workdir / f"stripe_events_{tag}.tsv"
        with path.open("w") as out:
            for i in range(count):
                body = json.dumps(
                    {
                        "id": f"evt_bench_{tag}_{i}",
                        "object": "event",
                        "type": "payment_intent.succeeded",
                        "data": {
                            "object": {
                                "id": f"pi_bench_{tag}_{i}",
                                "object": "payment_intent",
                                "status": "succeeded",
                                "metadata": {"paymentId": str(uuid.uuid4())},
                            }
                        },
                    },
                    separators=(",", ":"),
                )
                signature = stripe.WebhookSignature._compute_signature(f"{stamp}.{body}", secret)
                out.write(f"/webhooks/stripe\tt={stamp},v1={signature}\t{body}\n")
        return path

    def phase_scaling(self) -> None:
        """POST /orders with 1, 10 and 50 lines, one client (the cost of a request, no queueing)."""
        pools = {
            1: ("tokens", 0, self.plan.pool),
            10: ("tokens10", L10_FIRST, self.plan.scaling_pool),
            50: ("tokens50", L50_FIRST, self.plan.scaling_pool),
        }
        found: dict[int, list[loadgen.Measurement]] = {lines: [] for lines in pools}
        for run in range(self.plan.runs):
            for lines, (tokens, first, count) in pools.items():
                self.refill(first, count, lines)
                m = self.wrk_checkout(tokens, 1, self.plan.duration)
                found[lines].append(m)
                log(
                    f"run {run + 1} checkout {lines:>2} lines: {m.per_second:7.1f} orders/s  "
                    f"p50 {m.p50_ms:6.2f} ms  p99 {m.p99_ms:6.2f} ms  statuses {m.statuses}"
                )
        self.results["lines"] = {str(lines): loadgen.median_of(runs) for lines, runs in found.items()}

    def phase_reconcile(self) -> None:
        """``flask --app app reconcile-stock`` over growing product tables: time and peak RSS."""
        seed.recreate_database(self.base_db, "oms_bench_recon")
        self.release(self.recon_url)
        with seed.connect(self.recon_url) as conn:
            seed.install_helpers(conn)
        out: dict[str, Any] = {}
        time_bin = Path("/usr/bin/time")
        try:
            for size in self.plan.reconcile_sizes:
                started = time.monotonic()
                with seed.connect(self.recon_url) as conn:
                    conn.execute("TRUNCATE products, stock_movements, reconciliations CASCADE")
                    seed.seed_products(conn, size)
                    conn.execute("VACUUM (ANALYZE) products, stock_movements")
                log(f"reconcile: seeded {size} products in {time.monotonic() - started:.1f}s")
                runs = []
                for run in range(self.plan.runs):
                    with seed.connect(self.recon_url) as conn:
                        drifted = conn.execute(
                            "UPDATE products SET stock = stock + 1 WHERE right(id::text, 2) = '00'"
                        ).rowcount
                    runs.append(self.reconcile_once(time_bin, drifted))
                    log(
                        f"run {run + 1} reconcile {size:>9} products: {runs[-1]['seconds']:.2f}s wall, "
                        f"{runs[-1]['run_seconds']:.2f}s in the run, "
                        f"peak RSS {runs[-1]['peak_rss_mb']:.0f} MB, "
                        f"{runs[-1]['corrected']} corrected of {drifted} drifted"
                    )
                out[str(size)] = summarise(runs, ("seconds", "run_seconds", "peak_rss_mb"))
        finally:
            seed.drop_database(self.base_db, "oms_bench_recon")
        self.results["reconcile"] = out

    def reconcile_once(self, time_bin: Path, drifted: int) -> dict[str, Any]:
        env = {**self.env, "DATABASE_URL": self.recon_url}
        command = ["flask", "--app", "app", "reconcile-stock"]
        started = time.monotonic()
        if time_bin.exists():
            proc = subprocess.run(
                [str(time_bin), "-v", *command],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=1800,
            )
            match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
            peak_kb = int(match.group(1)) if match else 0
        else:
            peak_kb, proc = rss_of(command, env)
        seconds = time.monotonic() - started
        if proc.returncode != 0:
            raise RuntimeError(f"reconcile-stock failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        with seed.connect(self.recon_url) as conn:
            row = conn.execute(
                "SELECT extract(epoch FROM finished_at - started_at), products_checked, "
                "jsonb_array_length(discrepancies) FROM reconciliations ORDER BY started_at DESC LIMIT 1"
            ).fetchone()
        return {
            "seconds": round(seconds, 2),
            "run_seconds": round(float(row[0]), 3),
            "products_checked": int(row[1]),
            "corrected": int(row[2]),
            "peak_rss_mb": round(peak_kb / 1024, 1),
        }

    # ---- the whole bench ---------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        phases = self.plan.phases
        self.results["machine"] = machine_facts(self.base_db)
        self.results["plan"] = {
            "quick": self.plan.quick,
            "runs": self.plan.runs,
            "duration_s": self.plan.duration,
            "clients": list(self.plan.clients),
            "read_clients": self.plan.read_clients,
            "burst": self.plan.burst,
            "web_concurrency": self.plan.web_concurrency,
            "gunicorn": "gthread, 4 threads per worker (gunicorn.conf.py)",
            "worker_concurrency": self.worker_setup()["concurrency"],
            "worker_pool": self.worker_setup()["pool"],
            "products": PRODUCTS,
            "reconcile_sizes": list(self.plan.reconcile_sizes),
        }
        started = time.monotonic()
        self.setup()
        self.start_stack()
        if {"checkout", "reads", "payments", "scaling"} & set(phases):
            self.warm_up()
        if {"limit", "checkout"} & set(phases):
            self.phase_checkout()
        if "reads" in phases:
            self.phase_reads()
        if "shipments" in phases:
            self.phase_shipments()
        if "scaling" in phases:
            self.phase_scaling()
        if "payments" in phases:
            self.phase_payments()
        if "webhooks" in phases:
            self.phase_webhooks()
        if "fanout" in phases:
            self.phase_fanout()
        if "stripe-webhook" in phases:
            self.phase_stripe_webhook()
        if "reconcile" in phases:
            self.phase_reconcile()
        self.results["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        busy = max(
            self.results["machine"]["load_average_start"][0], self.results["machine"]["load_average_end"][0]
        )
        cpus = os.cpu_count() or 1
        if busy > cpus:
            self.results.setdefault("notes", []).append(
                f"Other work was running on the machine (load average up to {busy:.1f} on {cpus} CPUs "
                "at the start or end of the bench): absolute figures are low and noisy; ratios measured "
                "side by side suffer less."
            )
        self.results["elapsed_s"] = round(time.monotonic() - started, 1)
        return self.results


class Settled:
    """True once ``count()`` reaches ``target``, or stopped growing for 3 s after it started (a
    request lost to a gunicorn worker recycled by max_requests leaves one user without an order)."""

    def __init__(self, count: Any, target: int, quiet_s: float = 3.0) -> None:
        self.count, self.target, self.quiet_s = count, target, quiet_s
        self.last = -1
        self.changed = time.monotonic()
        self.reached: float | None = None

    def __call__(self) -> bool:
        value = int(self.count())
        now = time.monotonic()
        if value != self.last:
            self.last, self.changed = value, now
        if value >= self.target and self.reached is None:
            self.reached = now
        return value >= self.target or (value > 0 and now - self.changed > self.quiet_s)


class PySpy:
    """``py-spy record`` of a process group (gunicorn or celery and their children) for a while:
    a flame graph of where the web tier or the worker spends its time."""

    def __init__(
        self, procs: Processes, name: str, out: Path, seconds: float, results: dict[str, Any]
    ) -> None:
        self.procs, self.name, self.out, self.seconds = procs, name, out, seconds
        self.results = results
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PySpy:
        binary = BIN / "py-spy"
        if not binary.exists():
            log("py-spy is not installed (pip install py-spy): no profile")
            return self
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [str(binary), "record", "--pid", str(self.procs.pid(self.name)), "--subprocesses", "--gil",
             "--rate", "200", "--duration", f"{self.seconds:.0f}", "--format", "raw",
             "--output", str(self.out), "--nonblocking"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            try:
                self.process.wait(timeout=self.seconds + 30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
            if self.out.exists():
                profiles.compact(self.out)
                self.results.setdefault("profiles", {})[self.out.stem] = profiles.summarise(self.out)
                log(f"profile written to {self.out}")


class CpuMeter:
    """CPU seconds used by a process group (e.g. gunicorn and its workers) and by the whole machine
    while a measurement runs: tells whether the web tier or something else is the bottleneck."""

    def __init__(self, procs: Processes, name: str) -> None:
        self.procs, self.name = procs, name

    def _group_cpu(self) -> float:
        try:
            leader = psutil.Process(self.procs.pid(self.name))
            total = 0.0
            for p in [leader, *leader.children(recursive=True)]:
                try:
                    t = p.cpu_times()
                    total += t.user + t.system
                except psutil.Error:
                    pass
            return total
        except (psutil.Error, KeyError):
            return 0.0

    def __enter__(self) -> CpuMeter:
        self.t0 = time.monotonic()
        self.g0 = self._group_cpu()
        self.m0 = psutil.cpu_times()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.monotonic() - self.t0
        self.group = self._group_cpu() - self.g0
        m1 = psutil.cpu_times()
        busy0 = sum(self.m0) - self.m0.idle - getattr(self.m0, "iowait", 0)
        busy1 = sum(m1) - m1.idle - getattr(m1, "iowait", 0)
        self.machine = busy1 - busy0

    def summary(self) -> dict[str, float]:
        return {
            "process_cores": round(self.group / self.seconds, 2),
            "machine_cores": round(self.machine / self.seconds, 2),
        }


def rss_of(command: list[str], env: dict[str, str]) -> tuple[int, subprocess.CompletedProcess[str]]:
    """Peak RSS (kB) of a command and its children by polling, where /usr/bin/time is missing."""
    proc = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    peak = 0
    p = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            rss = sum(c.memory_info().rss for c in [p, *p.children(recursive=True)])
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.05)
    out, err = proc.communicate()
    return peak // 1024, subprocess.CompletedProcess(command, proc.returncode, out, err)


def summarise(runs: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    medians = {k: round(statistics.median(float(r[k]) for r in runs), 3) for k in keys}
    return {**medians, "runs": runs}


def machine_facts(database_url: str) -> dict[str, Any]:
    with seed.connect(database_url) as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]
        settings = dict(
            conn.execute(
                "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name IN "
                "('shared_buffers', 'synchronous_commit', 'fsync', 'max_connections', 'wal_level', "
                "'work_mem')"
            ).fetchall()
        )

    def version(command: list[str]) -> str:
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=10)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "unknown"

    commit = version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    cpu_model = (
        next(
            (
                ln.split(":", 1)[1].strip()
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else ""
    )
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": cpu_model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgres": pg_version,
        "postgres_settings": settings,
        "redis": redis.Redis.from_url(os.environ["REDIS_URL"]).info("server").get("redis_version", "?"),
        "wrk": version(["wrk", "-v"]),
        "pgbench": version([loadgen.ensure_pgbench(), "--version"]),
        "git_commit": commit + ("+dirty" if dirty else ""),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 1 run of 3 s per figure, small sizes"
    )
    parser.add_argument("--runs", type=int, help="runs per figure (the median is reported) [3; quick 1]")
    parser.add_argument("--duration", type=float, help="seconds per load run [8; quick 3]")
    parser.add_argument(
        "--burst",
        type=int,
        help="orders in the payments burst [2000; quick 300; the drain is a steady-state rate, "
        "--burst 5000 measures the same with 2.5x the time]",
    )
    parser.add_argument("--web-concurrency", type=int, help="gunicorn workers [nproc, at least 2]")
    parser.add_argument(
        "--worker-concurrency", type=int, help="WORKER_CONCURRENCY of the payments phase [the app's default]"
    )
    parser.add_argument(
        "--worker-pool",
        choices=("prefork", "threads", "gevent", "solo"),
        help="--pool added to the Procfile's worker line (and the no-op floor's) [the Procfile's]",
    )
    parser.add_argument("--only", help=f"comma-separated phases out of {','.join(PHASES)}")
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench"), help="where results go")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile (py-spy) the web tier (POST /orders, GET /orders/{id}, 8 connections) and "
        "the worker draining payments: summaries in the results, stacks in instance/bench/",
    )
    args = parser.parse_args(argv)
    plan = Plan.from_args(args)
    unknown = set(plan.phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    loadgen.ensure_wrk()
    loadgen.ensure_pgbench()
    random.seed(7)

    def interrupted(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    bench = Bench(plan)
    try:
        results = bench.run()
    except KeyboardInterrupt:
        log("interrupted: stopping every process the bench started")
        return 130
    finally:
        bench.close()
    paths = report.write(results, plan.out_dir)
    log(
        "results: " + ", ".join(str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p) for p in paths)
    )
    print(report.headline(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
