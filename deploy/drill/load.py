"""Constant mixed load at a fixed rate (open loop), every request's outcome recorded.

A request is sent on schedule whether or not earlier ones have answered (a thread pool sends them),
so a stall shows as latency and errors instead of silently lowering the rate. The mix: catalogue
reads, product reads, cart writes, checkouts with an ``Idempotency-Key`` (some of them sent twice,
to check that a replay answers the same order whichever release serves it) and order reads.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests

# action → (weight, statuses that are a correct answer)
MIX: dict[str, tuple[int, frozenset[int]]] = {
    "browse": (30, frozenset({200})),
    "product": (20, frozenset({200})),
    "add_to_cart": (25, frozenset({201})),
    "checkout": (15, frozenset({201})),
    "view_order": (10, frozenset({200})),
}
# Answers that are correct but not a success: a cart line beyond the stock or line limit (409),
# and a checkout refused because the `checkout` toggle is off for this user (503 feature-disabled).
EXPECTED_409 = frozenset({"add_to_cart", "checkout"})
REPLAY_SHARE = 0.2  # of successful checkouts, sent again with the same key and body


@dataclass
class Shopper:
    index: int
    user_id: str
    token: str
    cart_id: str | None = None
    cart_items: int = 0
    orders: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Outcome:
    t: float  # seconds since the load started, when the request was sent
    ms: float  # latency
    action: str
    status: int  # 0: transport error
    server: str  # HAProxy's server that answered (X-Drill-Server), "" when none
    user: int  # shopper index, -1 for anonymous reads
    kind: str  # ok | expected409 | featureOff | error
    detail: str = ""


class Load:
    def __init__(
        self, base_url: str, products: list[str], shoppers: list[Shopper], rate: float, seed: int = 11
    ) -> None:
        self.base_url = base_url
        self.products = products
        self.shoppers = shoppers
        self.rate = rate
        self.random = random.Random(seed)
        self.random_lock = threading.Lock()
        self.local = threading.local()
        self.outcomes: list[Outcome] = []
        self.outcomes_lock = threading.Lock()
        self.orders_201: dict[str, str] = {}  # idempotency key → orderId answered 201
        self.replay_mismatches: list[str] = []
        self.replays_refused: list[tuple[Shopper, str, dict[str, Any], str]] = []
        self.started = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- plumbing ----------------------------------------------------------------------------------
    def now(self) -> float:
        return time.monotonic() - self.started

    def http(self) -> requests.Session:
        session = getattr(self.local, "session", None)
        if session is None:
            session = requests.Session()
            self.local.session = session
        return session

    def pick(self, fn: Callable[[random.Random], Any]) -> Any:
        with self.random_lock:
            return fn(self.random)

    def call(
        self, action: str, method: str, path: str, shopper: Shopper | None = None, **kw: Any
    ) -> tuple[int, Any, requests.Response | None]:
        headers = dict(kw.pop("headers", {}))
        if shopper is not None:
            headers["Authorization"] = f"Bearer {shopper.token}"
        t = self.now()
        started = time.perf_counter()
        status, body, response, detail = 0, None, None, ""
        try:
            response = self.http().request(method, self.base_url + path, headers=headers, timeout=30, **kw)
            status = response.status_code
            if response.content and "json" in response.headers.get("Content-Type", ""):
                body = response.json()
        except requests.RequestException as exc:
            detail = f"{type(exc).__name__}: {str(exc)[:160]}"
        ms = (time.perf_counter() - started) * 1000
        kind = "ok" if status in MIX[action][1] else "error"
        if status == 409 and action in EXPECTED_409:
            kind = "expected409"
        toggled_off = isinstance(body, dict) and str(body.get("type", "")).endswith("feature-disabled")
        if status == 503 and action == "checkout" and toggled_off:
            kind = "featureOff"
        if kind == "error" and not detail:
            detail = f"{method} {path} → {status}: {str(body)[:200]}"
        server = response.headers.get("X-Drill-Server", "") if response is not None else ""
        outcome = Outcome(
            round(t, 3), round(ms, 2), action, status, server, shopper.index if shopper else -1, kind, detail
        )
        with self.outcomes_lock:
            self.outcomes.append(outcome)
        return status, body, response

    # -- the actions -------------------------------------------------------------------------------
    def browse(self) -> None:
        page = self.pick(lambda r: r.randint(1, 3))
        self.call("browse", "GET", f"/products?page={page}&pageSize=20")

    def product(self) -> None:
        product = self.pick(lambda r: r.choice(self.products))
        self.call("product", "GET", f"/products/{product}")

    def add_to_cart(self, shopper: Shopper) -> None:
        product, quantity = self.pick(lambda r: (r.choice(self.products), r.randint(1, 3)))
        status, body, _ = self.call(
            "add_to_cart",
            "POST",
            f"/cart/{shopper.user_id}/add",
            shopper,
            json={"productId": product, "quantity": quantity},
        )
        if status == 201:
            shopper.cart_id = body["cart"]["cartId"]
            shopper.cart_items += 1

    def checkout(self, shopper: Shopper) -> None:
        if not shopper.cart_items or shopper.cart_id is None:
            return self.add_to_cart(shopper)
        body = {"userId": shopper.user_id, "cartId": shopper.cart_id}
        key = str(uuid.uuid4())
        status, answer, _ = self.call(
            "checkout", "POST", "/orders", shopper, json=body, headers={"Idempotency-Key": key}
        )
        if status == 201:
            order_id = answer["orderId"]
            shopper.orders.append(order_id)
            shopper.cart_items = 0
            with self.outcomes_lock:
                self.orders_201[key] = order_id
            if self.pick(lambda r: r.random()) < REPLAY_SHARE:
                again, replayed, response = self.call(
                    "checkout", "POST", "/orders", shopper, json=body, headers={"Idempotency-Key": key}
                )
                same = again == 201 and isinstance(replayed, dict) and replayed.get("orderId") == order_id
                flagged = response is not None and response.headers.get("Idempotent-Replayed") == "true"
                toggled_off = isinstance(replayed, dict) and str(replayed.get("type", "")).endswith(
                    "feature-disabled"
                )
                if again == 503 and toggled_off:
                    # The toggle is checked before the key: the order stands, and the same replay
                    # must answer it once the toggle is on again (checked after the load).
                    with self.outcomes_lock:
                        self.replays_refused.append((shopper, key, body, order_id))
                elif not (same and flagged):
                    with self.outcomes_lock:
                        self.replay_mismatches.append(f"{key}: {again} {str(replayed)[:120]}")
        return None

    def view_order(self, shopper: Shopper) -> None:
        if not shopper.orders:
            return self.browse()
        order = self.pick(lambda r: r.choice(shopper.orders))
        self.call("view_order", "GET", f"/orders/{order}", shopper)
        return None

    def one(self) -> None:
        names = list(MIX)
        action = self.pick(lambda r: r.choices(names, weights=[MIX[n][0] for n in names])[0])
        if action in ("browse", "product"):
            getattr(self, action)()
            return
        shopper = self.pick(lambda r: r.choice(self.shoppers))
        # One request at a time per shopper: a person does not click twice at once.
        if not shopper.lock.acquire(blocking=False):
            self.browse()
            return
        try:
            getattr(self, action)(shopper)
        finally:
            shopper.lock.release()

    # -- running -----------------------------------------------------------------------------------
    def start(self, clients: int = 32) -> None:
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, args=(clients,), name="drill-load", daemon=True)
        self._thread.start()

    def _run(self, clients: int) -> None:
        interval = 1.0 / self.rate
        next_send = time.monotonic()
        with ThreadPoolExecutor(max_workers=clients, thread_name_prefix="drill-client") as pool:
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_send:
                    pool.submit(self._safe_one)
                    next_send += interval
                    continue
                self._stop.wait(max(0.0, next_send - now))

    def _safe_one(self) -> None:
        try:
            self.one()
        except Exception as exc:  # a bug in the generator must show, not kill the thread silently
            with self.outcomes_lock:
                self.outcomes.append(
                    Outcome(round(self.now(), 3), 0.0, "browse", 0, "", -1, "error", repr(exc))
                )

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)

    def snapshot(self) -> list[Outcome]:
        with self.outcomes_lock:
            return list(self.outcomes)
