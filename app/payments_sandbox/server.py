"""The sandbox's HTTP face: Stripe's v1 wire format (form-encoded in, JSON out), its auth, its
idempotency semantics, and fault injection for tests.

Idempotency, as Stripe does it: a POST carrying ``Idempotency-Key`` whose endpoint ran (a 200, or
a 402 decline) is remembered; the same key with the same parameters gets that response again with
``Idempotent-Replayed: true``; with other parameters, a 400 ``idempotency_error``. Validation
errors and injected faults are not remembered, so a retry runs for real. Requests with one key are
serialised (Stripe answers a concurrent duplicate 409; here it waits and is replayed).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException
from werkzeug.serving import BaseWSGIServer, make_server

from app.payments_sandbox.store import API_VERSION, Store, StripeError, invalid_request, new_id
from app.payments_sandbox.webhooks import DEFAULT_SECRET, WebhookSender

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


@dataclass(frozen=True)
class Remembered:
    fingerprint: tuple[Any, ...]
    status: int
    body: dict[str, Any]
    request_id: str


class IdempotencyKeys:
    """Responses remembered per (API key, Idempotency-Key), with one lock per key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[tuple[str, str], Remembered] = {}
        self._key_locks: dict[tuple[str, str], threading.Lock] = {}

    @contextmanager
    def holding(self, scope: tuple[str, str]) -> Iterator[None]:
        with self._lock:
            key_lock = self._key_locks.setdefault(scope, threading.Lock())
        with key_lock:
            yield

    def get(self, scope: tuple[str, str]) -> Remembered | None:
        with self._lock:
            return self._records.get(scope)

    def remember(self, scope: tuple[str, str], record: Remembered) -> None:
        with self._lock:
            self._records[scope] = record

    def clear(self) -> None:
        with self._lock:
            self._records.clear()


def decode_params(pairs: MultiDict[str, str]) -> dict[str, Any]:
    """Stripe's form encoding back to structure: ``metadata[k]=v`` → dict, ``a[0]=x`` → list."""
    root: dict[str, Any] = {}
    for raw_key, value in pairs.items(multi=True):
        match = _KEY.match(raw_key)
        if match is None:
            raise invalid_request(f"Invalid parameter name: {raw_key}", param=raw_key)
        path = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node: dict[str, Any] = root
        for index, part in enumerate(path[:-1]):
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
            if path[index + 1] == "":
                path[index + 1] = str(len(node))
        node[path[-1]] = value
    return _lists(root)


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _lists(v) for k, v in node.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


def _json(status: int, body: dict[str, Any], **headers: str) -> Response:
    response = Response(json.dumps(body, indent=2), status=status, mimetype="application/json")
    response.headers["Request-Id"] = headers.pop("request_id", None) or new_id("req")
    response.headers["Stripe-Version"] = request.headers.get("Stripe-Version", API_VERSION)
    for name, value in headers.items():
        response.headers[name.replace("_", "-").title()] = value
    return response


def _error(exc: StripeError) -> Response:
    return _json(exc.status, exc.to_json())


def _api_key() -> str:
    header = request.headers.get("Authorization", "")
    key = ""
    if header.startswith("Bearer "):
        key = header[len("Bearer ") :].strip()
    elif request.authorization is not None and request.authorization.type == "basic":
        key = request.authorization.username or ""
    if not key:
        raise invalid_request(
            "You did not provide an API key. You need to provide your API key in the Authorization "
            "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
            status=401,
        )
    if key.startswith(("sk_live_", "rk_live_")):
        raise invalid_request("The payment sandbox refuses live-mode keys.", status=401)
    return key


def create_sandbox_app(store: Store | None = None) -> Flask:
    """The sandbox as a WSGI app; ``store`` may be shared with a test that inspects it."""
    app = Flask("payments_sandbox")
    state = store or Store()
    keys = IdempotencyKeys()
    app.extensions["sandbox_store"] = state

    def api(handler: Any, *args: Any) -> Response:
        """Run one /v1 call: faults, auth, parameters, idempotency, delay."""
        with state.lock:
            state.api_requests += 1
            faults = state.faults
            delay = faults.delay_ms / 1000.0
            if request.path.endswith("/confirm"):
                delay += faults.delay_confirm_ms / 1000.0
            elif request.method == "POST" and request.path == "/v1/refunds":
                delay += faults.delay_refund_ms / 1000.0
            injected = faults.fail_next > 0
            if injected:
                faults.fail_next -= 1
                faults.served += 1
                status = faults.status
        if injected:
            time.sleep(delay)
            error = {"type": "api_error", "message": f"Injected fault: the sandbox answers {status}."}
            if status == 429:
                error["code"] = "rate_limit"
            return _json(status, {"error": error})
        try:
            api_key = _api_key()
            params = decode_params(request.args if request.method == "GET" else request.form)
            idempotency_key = request.headers.get("Idempotency-Key")
            if request.method != "POST" or not idempotency_key:
                status, body = handler(params, *args)
                time.sleep(delay)
                return _json(status, body)
            scope = (api_key, idempotency_key)
            fingerprint = (request.method, request.path, tuple(sorted(request.form.items(multi=True))))
            with keys.holding(scope):
                earlier = keys.get(scope)
                if earlier is not None:
                    if earlier.fingerprint != fingerprint:
                        raise StripeError(
                            400,
                            "idempotency_error",
                            "Keys for idempotent requests can only be used with the same parameters "
                            "they were first used with. Try using a key other than "
                            f"'{idempotency_key}' if you meant to execute a different request.",
                        )
                    time.sleep(delay)
                    return _json(
                        earlier.status,
                        earlier.body,
                        idempotency_key=idempotency_key,
                        idempotent_replayed="true",
                        original_request=earlier.request_id,
                    )
                status, body = handler(params, *args)
                request_id = new_id("req")
                if status == 200 or status == 402:  # the endpoint ran: its outcome is final
                    keys.remember(scope, Remembered(fingerprint, status, body, request_id))
            time.sleep(delay)
            return _json(status, body, idempotency_key=idempotency_key, request_id=request_id)
        except StripeError as exc:
            return _error(exc)

    @app.post("/v1/payment_intents")
    def create_payment_intent() -> Response:
        return api(lambda params: state.create_payment_intent(params))

    @app.get("/v1/payment_intents")
    def list_payment_intents() -> Response:
        return api(lambda params: (200, state.list_payment_intents(params)))

    @app.get("/v1/payment_intents/<intent_id>")
    def get_payment_intent(intent_id: str) -> Response:
        return api(lambda params, pid: (200, state.get_payment_intent(pid)), intent_id)

    @app.get("/v1/payment_intents/search")
    def search_payment_intents() -> Response:
        return api(lambda params: (200, state.search_payment_intents(params)))

    @app.post("/v1/payment_intents/<intent_id>/confirm")
    def confirm_payment_intent(intent_id: str) -> Response:
        return api(lambda params, pid: state.confirm_payment_intent(pid, params), intent_id)

    @app.post("/v1/payment_intents/<intent_id>/cancel")
    def cancel_payment_intent(intent_id: str) -> Response:
        return api(lambda params, pid: (200, state.cancel_payment_intent(pid, params)), intent_id)

    @app.post("/v1/refunds")
    def create_refund() -> Response:
        return api(lambda params: (200, state.create_refund(params)))

    @app.get("/v1/refunds")
    def list_refunds() -> Response:
        return api(lambda params: (200, state.list_refunds(params)))

    @app.get("/v1/refunds/<refund_id>")
    def get_refund(refund_id: str) -> Response:
        return api(lambda params, rid: (200, state.get_refund(rid)), refund_id)

    # ---- test support (not part of Stripe's API) ------------------------------------------------

    def control(action: Any) -> Response:
        """A test-support call: its StripeError becomes Stripe's error body, like the API's."""
        try:
            return _json(200, action(request.get_json(silent=True) or {}))
        except StripeError as exc:
            return _error(exc)

    def outcome(body: dict[str, Any]) -> str:
        value = body.get("outcome", "succeed")
        if value not in ("succeed", "fail"):
            raise invalid_request('outcome must be "succeed" or "fail"', param="outcome")
        return str(value)

    @app.post("/_sandbox/payment_intents/<intent_id>/authenticate")
    def authenticate(intent_id: str) -> Response:
        return control(lambda body: state.authenticate(intent_id, outcome(body)))

    @app.post("/_sandbox/payment_intents/<intent_id>/settle")
    def settle(intent_id: str) -> Response:
        return control(lambda body: state.settle(intent_id, outcome(body)))

    @app.post("/_sandbox/payment_intents/<intent_id>/dispute")
    def dispute(intent_id: str) -> Response:
        return control(
            lambda body: state.open_dispute(
                intent_id, body.get("reason"), int(body["amount"]) if "amount" in body else None
            )
        )

    @app.post("/_sandbox/disputes/<dispute_id>/close")
    def close_dispute(dispute_id: str) -> Response:
        return control(lambda body: state.close_dispute(dispute_id, str(body.get("status", ""))))

    @app.post("/_sandbox/refunds/<refund_id>/fail")
    def fail_refund(refund_id: str) -> Response:
        return control(lambda body: state.settle_refund(refund_id, "fail", body.get("failureReason")))

    @app.post("/_sandbox/refunds/<refund_id>/succeed")
    def succeed_refund(refund_id: str) -> Response:
        return control(lambda body: state.settle_refund(refund_id, "succeed"))

    @app.get("/_sandbox/events")
    def events() -> Response:
        with state.lock:
            kept = [e for e in state.events if request.args.get("type") in (None, e["type"])]
        return _json(200, {"data": kept})

    @app.post("/_sandbox/faults")
    def set_faults() -> Response:
        body = request.get_json(silent=True)
        names = ("failNext", "status", "delayMs", "delayConfirmMs", "delayRefundMs", "dropWebhooks")
        if not isinstance(body, dict) or set(body) - set(names):
            return _json(
                400,
                {
                    "error": "expected {failNext?, status?, delayMs?, delayConfirmMs?, delayRefundMs?, "
                    "dropWebhooks?}"
                },
            )
        values = {k: body[k] for k in names if k in body}
        if any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in values.values()):
            return _json(
                400,
                {
                    "error": "failNext, status, delayMs, delayConfirmMs, delayRefundMs and "
                    "dropWebhooks are non-negative integers"
                },
            )
        if "status" in values and not 400 <= values["status"] <= 599:
            return _json(400, {"error": "status must be an HTTP error status (400-599)"})
        with state.lock:
            if "failNext" in values:
                state.faults.fail_next = values["failNext"]
                state.faults.status = values.get("status", 503)
            elif "status" in values:
                state.faults.status = values["status"]
            if "delayMs" in values:
                state.faults.delay_ms = values["delayMs"]
            if "delayConfirmMs" in values:
                state.faults.delay_confirm_ms = values["delayConfirmMs"]
            if "delayRefundMs" in values:
                state.faults.delay_refund_ms = values["delayRefundMs"]
            if "dropWebhooks" in values:
                state.faults.drop_webhooks = values["dropWebhooks"]
        return faults_view()

    @app.get("/_sandbox/faults")
    def faults_view() -> Response:
        with state.lock:
            f = state.faults
            return _json(
                200,
                {
                    "failNext": f.fail_next,
                    "status": f.status,
                    "delayMs": f.delay_ms,
                    "delayConfirmMs": f.delay_confirm_ms,
                    "delayRefundMs": f.delay_refund_ms,
                    "served": f.served,
                    "dropWebhooks": f.drop_webhooks,
                },
            )

    @app.delete("/_sandbox/faults")
    def clear_faults() -> Response:
        with state.lock:
            served = state.faults.served
            state.faults.fail_next = state.faults.delay_ms = state.faults.drop_webhooks = 0
            state.faults.delay_confirm_ms = state.faults.delay_refund_ms = 0
            state.faults.status = 503
            state.faults.served = served
        return faults_view()

    @app.get("/_sandbox/stats")
    def stats() -> Response:
        return _json(200, state.stats(request.args.get("paymentId")))

    @app.post("/_sandbox/reset")
    def reset() -> Response:
        state.reset()
        keys.clear()
        return _json(200, state.stats())

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        if exc.code in (404, 405):
            return _error(
                invalid_request(
                    f"Unrecognized request URL ({request.method}: {request.path}). Please see "
                    "https://stripe.com/docs or we can help at https://support.stripe.com/.",
                    status=404,
                )
            )
        return _error(StripeError(exc.code or 500, "invalid_request_error", exc.description or "Bad request"))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        app.logger.exception("sandbox error")
        return _error(StripeError(500, "api_error", f"Sandbox error: {type(exc).__name__}"))

    return app


class SandboxServer:
    """The sandbox on a threaded WSGI server, in a background thread (tests, or the CLI)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        store: Store | None = None,
        *,
        webhook_url: str | None = None,
        webhook_secret: str = DEFAULT_SECRET,
    ) -> None:
        self.store = store or Store()
        self.app = create_sandbox_app(self.store)
        # Events go to webhook_url when one is given (Procfile.dev: the web process's endpoint).
        self.webhooks = WebhookSender(self.store, webhook_url, webhook_secret) if webhook_url else None
        self.server: BaseWSGIServer = make_server(host, port, self.app, threaded=True)
        self.host = host
        self.port = int(self.server.server_port)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> SandboxServer:
        if self.webhooks is not None:
            self.webhooks.start()
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="payments-sandbox", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        if self.webhooks is not None:
            self.webhooks.start()
        self.server.serve_forever()

    def stop(self) -> None:
        if self.webhooks is not None:
            self.webhooks.stop()
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
