"""The sandbox's webhooks: every event, signed as Stripe signs them, POSTed to one URL, retried.

Stripe's scheme (``stripe.Webhook.construct_event`` verifies it): ``Stripe-Signature:
t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with the endpoint secret>``. A delivery
that does not answer 2xx is tried again with a growing delay, up to ``max_attempts``; the fault
``{"dropWebhooks": N}`` loses the next N events on purpose (a lost webhook must only delay).
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import json
import logging
import threading
import time
from typing import Any

import requests

from app.payments_sandbox.store import Store

log = logging.getLogger("payments_sandbox.webhooks")

DEFAULT_SECRET = "whsec_sandbox"  # noqa: S105 (the sandbox's test secret, as SPEC §5.3 names it)


def stripe_signature(payload: bytes, secret: str, timestamp: int) -> str:
    """The ``Stripe-Signature`` header value for ``payload`` at ``timestamp``."""
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class WebhookSender:
    """Sends the store's events from one background thread, oldest due first."""

    def __init__(
        self,
        store: Store,
        url: str,
        secret: str = DEFAULT_SECRET,
        *,
        timeout: float = 5.0,
        max_attempts: int = 8,
        first_delay: float = 0.5,
        max_delay: float = 30.0,
    ) -> None:
        self.store = store
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.delivered = 0
        self.dropped = 0
        self.abandoned = 0
        self._queue: list[tuple[float, int, int, dict[str, Any]]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._stopped = False
        self._session = requests.Session()
        self._thread = threading.Thread(target=self._run, name="sandbox-webhooks", daemon=True)
        store.on_event = self.enqueue

    def start(self) -> WebhookSender:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        self._thread.join(timeout=5)
        self._session.close()

    def enqueue(self, event: dict[str, Any]) -> None:
        with self.store.lock:
            drop = self.store.faults.drop_webhooks > 0
            if drop:
                self.store.faults.drop_webhooks -= 1
        if drop:
            self.dropped += 1
            log.info("webhook dropped on purpose: %s %s", event["type"], event["id"])
            return
        self._schedule(time.monotonic(), 1, event)

    def _schedule(self, due: float, attempt: int, event: dict[str, Any]) -> None:
        with self._wake:
            heapq.heappush(self._queue, (due, next(self._order), attempt, event))
            self._wake.notify()

    def pending(self) -> int:
        with self._wake:
            return len(self._queue)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopped and (not self._queue or self._queue[0][0] > time.monotonic()):
                    wait = self._queue[0][0] - time.monotonic() if self._queue else None
                    self._wake.wait(timeout=wait)
                if self._stopped:
                    return
                _, _, attempt, event = heapq.heappop(self._queue)
            self._deliver(attempt, event)

    def _deliver(self, attempt: int, event: dict[str, Any]) -> None:
        payload = json.dumps(event).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": stripe_signature(payload, self.secret, int(time.time())),
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        }
        try:
            response = self._session.post(
                self.url, data=payload, headers=headers, timeout=self.timeout, allow_redirects=False
            )
            ok = 200 <= response.status_code < 300
            outcome = str(response.status_code)
        except requests.RequestException as exc:
            ok, outcome = False, type(exc).__name__
        if ok:
            self.delivered += 1
            return
        if attempt >= self.max_attempts:
            self.abandoned += 1
            log.warning(
                "webhook abandoned after %d attempts: %s %s (%s)",
                attempt,
                event["type"],
                event["id"],
                outcome,
            )
            return
        delay = min(self.first_delay * 2 ** (attempt - 1), self.max_delay)
        self._schedule(time.monotonic() + delay, attempt + 1, event)
