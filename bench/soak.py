"""Soak: mixed traffic at a steady rate against the Procfile processes, for minutes, watching for drift.

    python -m bench.soak [--minutes 10] [--rate 15] [--users 40]     (or `make soak`)

Starts the payment sandbox, an SMTP sink and the Procfile's ``release``, ``web``, ``worker`` and
``beat`` lines (on ``DATABASE_URL``/``REDIS_URL``; ``make soak`` boots embedded ones when unset),
seeds products and customers over the API, then sends ``--rate`` requests per second, open loop
(a request is sent on schedule whether or not the previous ones have answered), drawn from a mix:
browse the catalogue, view a product, add to a cart, check out, view an order, cancel an order.

Every ``--sample`` seconds it records: requests and errors (any 5xx, any transport error, any
status the action does not expect), p50/p99 latency of the window, the Celery queue depth
(``LLEN`` of ``oms`` plus ``oms.notifications``), and the RSS of the web (gunicorn master +
workers) and worker (celery main + pool) process trees. At the end it waits for the queue to
drain and every payment to settle, and writes ``docs/soak.json``, ``docs/soak.md`` and ``docs/soak.png``.

The load generator is a Python client (``requests`` on a small thread pool): the rate is steady
and modest (tens of requests per second), far below what would make the client itself the
bottleneck, and it keeps the scenario (carts, checkouts, cancellations of real orders) readable.
The pass criteria: zero errors, a queue that drains, RSS that stays flat (the last third's median
within 15 % + 10 MiB of the first third's, after warm-up).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import redis
import requests

from app.adapters.queue import WORKER_QUEUES

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PASSWORD = "soak-password-1"  # noqa: S105 (throw-away soak accounts)
ADDRESS = {"line1": "1 Main St", "city": "Springfield", "postalCode": "12345", "country": "US"}

# action name → (weight, statuses that are a correct answer)
MIX: dict[str, tuple[int, frozenset[int]]] = {
    "browse": (35, frozenset({200})),
    "product": (20, frozenset({200})),
    "add_to_cart": (20, frozenset({201, 409})),  # 409: more in the cart than in stock
    "checkout": (10, frozenset({201, 409, 422})),  # 409: out of stock; 422: the cart emptied meanwhile
    "view_order": (10, frozenset({200})),
    "cancel": (5, frozenset({200, 409})),  # 409: already cancelled by a failed payment
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def procfile() -> dict[str, str]:
    lines = {}
    for raw in (ROOT / "Procfile").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", raw)
        if match:
            lines[match.group(1)] = match.group(2)
    return lines


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if predicate():
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)


class Processes:
    """The stack's processes, each in its own process group, stopped (TERM, then KILL) at the end."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir, self.env = workdir, env
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, command: str) -> None:
        with (self.workdir / f"{name}.log").open("ab") as log:
            self.running[name] = subprocess.Popen(
                ["sh", "-c", f"exec {command}"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def tree_rss(self, name: str) -> int:
        """Resident memory of the process and its descendants, in bytes."""
        try:
            root = psutil.Process(self.running[name].pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0
        total = 0
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += proc.memory_info().rss
        return total

    def alive(self, name: str) -> bool:
        return self.running[name].poll() is None

    def stop_all(self) -> None:
        for process in self.running.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.running.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        self.running.clear()


@dataclass
class Shopper:
    user_id: str
    token: str
    cart_id: str | None = None
    cart_items: int = 0
    orders: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Window:
    requests: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    by_action: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)


class Soak:
    def __init__(self, base_url: str, products: list[str], shoppers: list[Shopper], seed: int) -> None:
        self.base_url = base_url
        self.products = products
        self.shoppers = shoppers
        self.random = random.Random(seed)
        self.window = Window()
        self.lock = threading.Lock()
        self.local = threading.local()
        self.totals: dict[str, int] = {"requests": 0, "errors": 0}
        self.status_counts: dict[str, int] = {}

    def http(self) -> requests.Session:
        session = getattr(self.local, "session", None)
        if session is None:
            session = requests.Session()
            self.local.session = session
        return session

    def call(self, action: str, method: str, path: str, token: str | None = None, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        started = time.perf_counter()
        status: int | None = None
        body: Any = None
        try:
            response = self.http().request(method, self.base_url + path, headers=headers, timeout=30, **kw)
            status = response.status_code
            if response.content and response.headers.get("Content-Type", "").endswith("json"):
                body = response.json()
        except requests.RequestException as exc:
            body = f"{type(exc).__name__}: {exc}"
        elapsed = time.perf_counter() - started
        ok = status in MIX[action][1]
        with self.lock:
            self.window.requests += 1
            self.window.latencies.append(elapsed)
            self.window.by_action[action] = self.window.by_action.get(action, 0) + 1
            key = f"{action} {status}"
            self.status_counts[key] = self.status_counts.get(key, 0) + 1
            if not ok:
                self.window.errors += 1
                if len(self.window.error_samples) < 5:
                    self.window.error_samples.append(f"{method} {path} → {status}: {str(body)[:200]}")
        return status, body

    # -- the actions -------------------------------------------------------------------------------
    def browse(self) -> None:
        self.call("browse", "GET", f"/products?page={self.random.randint(1, 3)}&pageSize=20")

    def product(self) -> None:
        self.call("product", "GET", f"/products/{self.random.choice(self.products)}")

    def add_to_cart(self, shopper: Shopper) -> None:
        product = self.random.choice(self.products)
        status, body = self.call(
            "add_to_cart",
            "POST",
            f"/cart/{shopper.user_id}/add",
            shopper.token,
            json={"productId": product, "quantity": self.random.randint(1, 3)},
        )
        if status == 201:
            shopper.cart_id = body["cart"]["cartId"]
            shopper.cart_items += 1

    def checkout(self, shopper: Shopper) -> None:
        if not shopper.cart_id or not shopper.cart_items:
            return self.add_to_cart(shopper)
        status, body = self.call(
            "checkout",
            "POST",
            "/orders",
            shopper.token,
            json={"userId": shopper.user_id, "cartId": shopper.cart_id},
        )
        if status == 201:
            shopper.orders.append(body["orderId"])
            shopper.cart_items = 0
        return None

    def view_order(self, shopper: Shopper) -> None:
        if not shopper.orders:
            return self.browse()
        self.call("view_order", "GET", f"/orders/{self.random.choice(shopper.orders)}", shopper.token)
        return None

    def cancel(self, shopper: Shopper) -> None:
        if not shopper.orders:
            return self.browse()
        order_id = shopper.orders.pop(self.random.randrange(len(shopper.orders)))
        self.call("cancel", "PUT", f"/orders/{order_id}", shopper.token, json={"status": "CANCELLED"})
        return None

    def one(self) -> None:
        names = list(MIX)
        action = self.random.choices(names, weights=[MIX[n][0] for n in names])[0]
        if action in ("browse", "product"):
            getattr(self, action)()
            return
        shopper = self.random.choice(self.shoppers)
        # One request at a time per shopper: a person does not click twice at once.
        if not shopper.lock.acquire(blocking=False):
            self.browse()
            return
        try:
            getattr(self, action)(shopper)
        finally:
            shopper.lock.release()

    def take_window(self) -> Window:
        with self.lock:
            window, self.window = self.window, Window()
            self.totals["requests"] += window.requests
            self.totals["errors"] += window.errors
        return window


def queued(broker: redis.Redis) -> int:
    """Messages waiting in the worker's queues."""
    return sum(int(broker.llen(name)) for name in WORKER_QUEUES.split(","))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def seed(base_url: str, env: dict[str, str], products: int, users: int) -> tuple[list[str], list[Shopper]]:
    http = requests.Session()
    admin_email = f"soak-admin-{uuid.uuid4().hex[:8]}@example.com"
    subprocess.run(
        ["flask", "--app", "app", "create-admin", "--email", admin_email, "--password", PASSWORD],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    admin = http.post(f"{base_url}/auth/token", json={"email": admin_email, "password": PASSWORD}, timeout=10)
    admin_headers = {"Authorization": f"Bearer {admin.json()['accessToken']}"}
    product_ids = []
    for i in range(products):
        created = http.post(
            f"{base_url}/products",
            headers=admin_headers,
            json={"productName": f"Soak item {i}", "description": "soak", "price": 5 + i, "stock": 100_000},
            timeout=10,
        )
        created.raise_for_status()
        product_ids.append(created.json()["productId"])
    shoppers = []
    for i in range(users):
        email = f"soak-{i}-{uuid.uuid4().hex[:8]}@example.com"
        user = http.post(
            f"{base_url}/users",
            json={"name": f"Soak {i}", "email": email, "password": PASSWORD, "address": ADDRESS},
            timeout=10,
        )
        user.raise_for_status()
        token = http.post(f"{base_url}/auth/token", json={"email": email, "password": PASSWORD}, timeout=10)
        token.raise_for_status()
        shoppers.append(Shopper(user.json()["userId"], token.json()["accessToken"]))
    return product_ids, shoppers


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="oms-soak-"))
    port, sandbox_port, smtp_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PORT": str(port),
        "WEB_CONCURRENCY": str(args.web_concurrency),
        "WORKER_CONCURRENCY": str(args.worker_concurrency),
        "STRIPE_API_BASE": f"http://127.0.0.1:{sandbox_port}",
        "SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "CELERY_BEAT_SCHEDULE": str(workdir / "celerybeat-schedule"),
        "AUTH_RATE_LIMIT": "100000/minute",  # seeding logs in every shopper from one address
        "AUTH_ACCOUNT_RATE_LIMIT": "100000/minute",
        "SIGNUP_RATE_LIMIT": "100000/minute",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("DATABASE_URL", "REDIS_URL"):
        if not env.get(name):
            raise SystemExit(f"{name} is not set: run `make soak` (it boots embedded services)")
    lines = procfile()
    procs = Processes(workdir, env)
    base_url = f"http://127.0.0.1:{port}"
    broker = redis.Redis.from_url(env["REDIS_URL"])
    samples: list[dict[str, Any]] = []
    try:
        subprocess.run(["sh", "-c", lines["release"]], cwd=ROOT, env=env, check=True, capture_output=True)
        procs.start("payments", f"flask --app app payments-sandbox --host 127.0.0.1 --port {sandbox_port}")
        procs.start("smtp", f"{sys.executable} -m app.devtools.smtp_sink --host 127.0.0.1 --port {smtp_port}")
        for name in ("web", "worker", "beat"):
            procs.start(name, lines[name])
        wait_for(lambda: requests.get(f"{base_url}/readyz", timeout=2).status_code == 200, 90, "web")
        products, shoppers = seed(base_url, env, args.products, args.users)
        soak = Soak(base_url, products, shoppers, args.seed)
        print(
            f"soak: {args.minutes} min at {args.rate} req/s, {args.users} users, logs in {workdir}",
            flush=True,
        )

        duration = args.minutes * 60
        interval = 1.0 / args.rate
        started = time.monotonic()
        next_sample = started + args.sample
        next_send = started
        with ThreadPoolExecutor(max_workers=args.clients) as pool:
            while True:
                now = time.monotonic()
                if now - started >= duration:
                    break
                if now >= next_send:
                    pool.submit(soak.one)
                    next_send += interval
                if now >= next_sample:
                    samples.append(sample(soak, procs, broker, now - started))
                    last = samples[-1]
                    print(
                        f"t={last['t']:>5.0f}s req={last['requests']:>4} err={last['errors']} "
                        f"p50={last['p50_ms']:.0f}ms p99={last['p99_ms']:.0f}ms queue={last['queue']} "
                        f"web={last['web_rss_mib']:.0f}MiB worker={last['worker_rss_mib']:.0f}MiB",
                        flush=True,
                    )
                    next_sample += args.sample
                time.sleep(max(0.0, min(next_send, next_sample) - time.monotonic()))
        samples.append(sample(soak, procs, broker, time.monotonic() - started))

        # Drain: the queue empties and no payment stays PENDING.
        drain_started = time.monotonic()
        drained = True
        try:
            wait_for(lambda: queued(broker) == 0 and pending_payments(env) == 0, 300, "drain")
        except TimeoutError:
            drained = False
        drain_seconds = time.monotonic() - drain_started
        alive = {name: procs.alive(name) for name in ("web", "worker", "beat")}
        return summarise(args, samples, soak, drained, drain_seconds, alive, pending_payments(env))
    finally:
        procs.stop_all()


def pending_payments(env: dict[str, str]) -> int:
    import psycopg

    url = re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", env["DATABASE_URL"])
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM payments WHERE status = 'PENDING'").fetchone()
    return int(row[0]) if row else 0


def sample(soak: Soak, procs: Processes, broker: redis.Redis, t: float) -> dict[str, Any]:
    window = soak.take_window()
    try:
        queue = queued(broker)
    except redis.RedisError:
        queue = -1
    return {
        "t": round(t, 1),
        "requests": window.requests,
        "errors": window.errors,
        "error_samples": window.error_samples,
        "p50_ms": round(percentile(window.latencies, 0.50) * 1000, 1),
        "p99_ms": round(percentile(window.latencies, 0.99) * 1000, 1),
        "queue": queue,
        "web_rss_mib": round(procs.tree_rss("web") / 2**20, 1),
        "worker_rss_mib": round(procs.tree_rss("worker") / 2**20, 1),
    }


def flat(values: list[float]) -> bool:
    """The last third's median within 15 % + 10 MiB of the first third's (after a warm-up sample)."""
    values = values[1:]
    if len(values) < 3:
        return True
    third = max(1, len(values) // 3)
    first, last = statistics.median(values[:third]), statistics.median(values[-third:])
    return last <= first * 1.15 + 10


def summarise(
    args: argparse.Namespace,
    samples: list[dict[str, Any]],
    soak: Soak,
    drained: bool,
    drain_seconds: float,
    alive: dict[str, bool],
    pending: int,
) -> dict[str, Any]:
    web = [s["web_rss_mib"] for s in samples]
    worker = [s["worker_rss_mib"] for s in samples]
    all_p99 = [s["p99_ms"] for s in samples if s["requests"]]
    verdict = {
        "zero_errors": soak.totals["errors"] == 0,
        "queue_drained": drained and pending == 0,
        "web_rss_flat": flat(web),
        "worker_rss_flat": flat(worker),
        "processes_alive": all(alive.values()),
    }
    return {
        "generatedAt": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "parameters": {
            "minutes": args.minutes,
            "ratePerSecond": args.rate,
            "users": args.users,
            "products": args.products,
            "webConcurrency": args.web_concurrency,
            "workerConcurrency": args.worker_concurrency,
            "sampleSeconds": args.sample,
            "mix": {name: weight for name, (weight, _) in MIX.items()},
            "loadGenerator": "Python requests, open loop, fixed rate",
        },
        "totals": {
            **soak.totals,
            "achievedRatePerSecond": round(soak.totals["requests"] / (args.minutes * 60), 2),
            "statusCounts": dict(sorted(soak.status_counts.items())),
            "p50MsOverall": round(
                statistics.median([s["p50_ms"] for s in samples if s["requests"]] or [0]), 1
            ),
            "p99MsWorstWindow": max(all_p99 or [0]),
            "maxQueueDepth": max(s["queue"] for s in samples),
            "drainSeconds": round(drain_seconds, 1),
            "pendingPaymentsAfterDrain": pending,
            "webRssMiB": {"first": web[1] if len(web) > 1 else web[0], "last": web[-1], "max": max(web)},
            "workerRssMiB": {
                "first": worker[1] if len(worker) > 1 else worker[0],
                "last": worker[-1],
                "max": max(worker),
            },
        },
        "verdict": verdict,
        "passed": all(verdict.values()),
        "samples": samples,
    }


def write_outputs(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    chart(result, out / "soak.png")
    totals, params = result["totals"], result["parameters"]
    lines = [
        "# Soak run",
        "",
        f"Generated by `make soak` (`python -m bench.soak`) at {result['generatedAt']} on "
        f"{result['machine']['cpus']} CPUs: {params['minutes']} min of mixed traffic at "
        f"{params['ratePerSecond']} req/s ({params['loadGenerator']}) from {params['users']} customers "
        f"against the Procfile's web ({params['webConcurrency']} gunicorn workers), worker "
        f"({params['workerConcurrency']} processes) and beat, with the payment sandbox and an SMTP sink.",
        "",
        f"Mix (weights): {', '.join(f'{k} {v}' for k, v in params['mix'].items())}.",
        "",
        "| criterion | result |",
        "|---|---|",
        *(
            f"| {name.replace('_', ' ')} | {'yes' if ok else '**NO**'} |"
            for name, ok in result["verdict"].items()
        ),
        "",
        "| figure | value |",
        "|---|---|",
        f"| requests | {totals['requests']} ({totals['achievedRatePerSecond']} req/s) |",
        f"| errors (5xx, transport errors, unexpected statuses) | {totals['errors']} |",
        f"| p50 latency (median of {params['sampleSeconds']} s windows) | {totals['p50MsOverall']} ms |",
        f"| p99 latency (worst {params['sampleSeconds']} s window) | {totals['p99MsWorstWindow']} ms |",
        f"| max queue depth (`LLEN oms` + `LLEN oms.notifications`) | {totals['maxQueueDepth']} |",
        f"| drained after the load stopped in | {totals['drainSeconds']} s |",
        f"| web RSS first → last (max) | {totals['webRssMiB']['first']} → {totals['webRssMiB']['last']} "
        f"({totals['webRssMiB']['max']}) MiB |",
        f"| worker RSS first → last (max) | {totals['workerRssMiB']['first']} → "
        f"{totals['workerRssMiB']['last']} ({totals['workerRssMiB']['max']}) MiB |",
        "",
        "Answers by action and status: "
        + ", ".join(f"`{k}` {v}" for k, v in totals["statusCounts"].items())
        + ". A 409 on add-to-cart/checkout/cancel is a correct answer (stock or state conflict), "
        "not an error.",
        "",
        "![latency, queue depth and RSS over time](soak.png)",
        "",
    ]
    (out / "soak.md").write_text("\n".join(lines))


def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result["samples"]
    t = [s["t"] / 60 for s in samples]
    fig, axes = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    axes[0].plot(t, [s["p50_ms"] for s in samples], label="p50")
    axes[0].plot(t, [s["p99_ms"] for s in samples], label="p99")
    axes[0].set_ylabel("latency (ms)")
    axes[0].legend()
    axes[0].set_title(
        f"Soak: {result['parameters']['ratePerSecond']} req/s for {result['parameters']['minutes']} min, "
        f"{result['totals']['errors']} errors"
    )
    axes[1].plot(t, [s["queue"] for s in samples], color="tab:green")
    axes[1].set_ylabel("queue depth (both queues)")
    axes[2].plot(t, [s["web_rss_mib"] for s in samples], label="web (gunicorn tree)")
    axes[2].plot(t, [s["worker_rss_mib"] for s in samples], label="worker (celery tree)")
    axes[2].set_ylabel("RSS (MiB)")
    axes[2].set_xlabel("minutes")
    axes[2].legend()
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=15.0, help="requests per second")
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--products", type=int, default=20)
    parser.add_argument("--clients", type=int, default=16, help="client threads")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds per sample window")
    parser.add_argument("--web-concurrency", type=int, default=2)
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=DOCS, help="where soak.json/.md/.png go")
    args = parser.parse_args(argv)
    result = run(args)
    write_outputs(result, args.out)
    print(json.dumps({k: result[k] for k in ("verdict", "passed")} | {"totals": result["totals"]}, indent=2))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
