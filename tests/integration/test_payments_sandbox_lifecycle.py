"""The sandbox behaves as Stripe's gateway does after the first answer (SPEC §5.3 "Sandbox additions"):
customer authentication, processing, create-then-confirm, cancel, search, pending and failed refunds,
disputes, and every state change sent as a Stripe-signed event that ``stripe`` itself verifies."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
import stripe

from app.payments_sandbox import SandboxServer
from tests.sandbox import API_KEY, Sandbox, sandbox_fixture  # noqa: F401

SECRET = "whsec_sandbox"
INTENT = {
    "amount": "2500",
    "currency": "usd",
    "automatic_payment_methods[enabled]": "true",
    "automatic_payment_methods[allow_redirects]": "never",
    "metadata[paymentId]": "pay-1",
    "metadata[orderId]": "order-1",
}


def client(url: str) -> stripe.StripeClient:
    return stripe.StripeClient(
        API_KEY,
        base_addresses={"api": url},
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=5),
    )


def control(sandbox_url: str, path: str, **body: Any) -> dict[str, Any]:
    response = requests.post(f"{sandbox_url}/_sandbox/{path}", json=body, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def confirmed(sandbox: Sandbox, method: str, **extra: str) -> dict[str, Any]:
    response = sandbox.api(
        "POST", "/v1/payment_intents", data={**INTENT, **extra, "payment_method": method, "confirm": "true"}
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


# ---- customer authentication (3-D Secure) and processing ----------------------------------------


def test_a_card_that_needs_authentication_leaves_the_intent_requiring_action(sandbox: Sandbox) -> None:
    intent = confirmed(sandbox, "pm_card_threeDSecure2Required")
    assert intent["status"] == "requires_action"
    assert intent["next_action"]["type"] == "use_stripe_sdk"
    assert intent["client_secret"].startswith(intent["id"] + "_secret_")
    assert intent["amount_received"] == 0 and intent["latest_charge"] is None


def test_authentication_that_succeeds_charges_once(sandbox: Sandbox) -> None:
    intent = confirmed(sandbox, "pm_card_threeDSecure2Required")
    done = control(sandbox.url, f"payment_intents/{intent['id']}/authenticate", outcome="succeed")
    assert (done["status"], done["amount_received"], done["next_action"]) == ("succeeded", 2500, None)
    assert sandbox.stats("pay-1")["succeededCharges"] == 1


def test_authentication_that_fails_is_a_decline_the_customer_can_retry(sandbox: Sandbox) -> None:
    intent = confirmed(sandbox, "pm_card_threeDSecure2Required")
    failed = control(sandbox.url, f"payment_intents/{intent['id']}/authenticate", outcome="fail")
    assert failed["status"] == "requires_payment_method"
    assert failed["last_payment_error"]["code"] == "payment_intent_authentication_failure"
    retried = client(sandbox.url).v1.payment_intents.confirm(
        intent["id"], params={"payment_method": "pm_card_visa"}
    )
    assert retried.status == "succeeded"


def test_a_processing_payment_settles_later_either_way(sandbox: Sandbox) -> None:
    ok = confirmed(sandbox, "pm_card_processing", **{"metadata[paymentId]": "pay-ok"})
    bad = confirmed(sandbox, "pm_card_processing", **{"metadata[paymentId]": "pay-bad"})
    assert ok["status"] == bad["status"] == "processing"
    assert (
        control(sandbox.url, f"payment_intents/{ok['id']}/settle", outcome="succeed")["status"] == "succeeded"
    )
    failed = control(sandbox.url, f"payment_intents/{bad['id']}/settle", outcome="fail")
    assert failed["status"] == "requires_payment_method"
    assert failed["last_payment_error"]["code"] == "card_declined"
    assert sandbox.stats("pay-ok")["succeededCharges"] == 1
    assert sandbox.stats("pay-bad")["succeededCharges"] == 0


def test_settling_what_is_not_processing_is_refused(sandbox: Sandbox) -> None:
    intent = confirmed(sandbox, "pm_card_visa")
    response = requests.post(
        f"{sandbox.url}/_sandbox/payment_intents/{intent['id']}/settle",
        json={"outcome": "succeed"},
        timeout=5,
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "payment_intent_unexpected_state"


# ---- the PaymentIntent lifecycle: create, confirm, cancel ---------------------------------------


def test_an_intent_created_first_is_confirmed_once(sandbox: Sandbox) -> None:
    stripe_client = client(sandbox.url)
    intent = stripe_client.v1.payment_intents.create(params={**_params(), "payment_method": "pm_card_visa"})
    assert intent.status == "requires_confirmation"
    assert stripe_client.v1.payment_intents.confirm(intent.id).status == "succeeded"
    with pytest.raises(stripe.InvalidRequestError) as refused:
        stripe_client.v1.payment_intents.confirm(intent.id)
    assert refused.value.code == "payment_intent_unexpected_state"
    assert sandbox.stats("pay-1")["succeededCharges"] == 1


def test_a_confirm_that_arrives_after_the_cancel_is_refused(sandbox: Sandbox) -> None:
    stripe_client = client(sandbox.url)
    intent = stripe_client.v1.payment_intents.create(params={**_params(), "payment_method": "pm_card_visa"})
    canceled = stripe_client.v1.payment_intents.cancel(intent.id, params={"cancellation_reason": "abandoned"})
    assert (canceled.status, canceled.cancellation_reason) == ("canceled", "abandoned")
    assert canceled.canceled_at is not None
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.payment_intents.confirm(intent.id)
    assert sandbox.stats("pay-1")["charges"] == 0


def test_a_succeeded_intent_cannot_be_canceled_only_refunded(sandbox: Sandbox) -> None:
    intent = confirmed(sandbox, "pm_card_visa")
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client(sandbox.url).v1.payment_intents.cancel(intent["id"])
    assert refused.value.code == "payment_intent_unexpected_state"


def test_intents_that_need_action_or_are_processing_can_be_canceled(sandbox: Sandbox) -> None:
    for method in ("pm_card_threeDSecure2Required", "pm_card_processing"):
        intent = confirmed(sandbox, method)
        assert client(sandbox.url).v1.payment_intents.cancel(intent["id"]).status == "canceled"


def _params() -> dict[str, Any]:
    return {
        "amount": 2500,
        "currency": "usd",
        "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
        "metadata": {"paymentId": "pay-1", "orderId": "order-1"},
    }


# ---- search -------------------------------------------------------------------------------------


def test_search_finds_the_intents_of_one_payment_by_metadata(sandbox: Sandbox) -> None:
    for payment_id in ("pay-a", "pay-b", "pay-a"):
        confirmed(sandbox, "pm_card_visa", **{"metadata[paymentId]": payment_id})
    found = client(sandbox.url).v1.payment_intents.search(params={"query": "metadata['paymentId']:'pay-a'"})
    assert [i.metadata["paymentId"] for i in found.data] == ["pay-a", "pay-a"]
    both = client(sandbox.url).v1.payment_intents.search(
        params={"query": "metadata['paymentId']:'pay-b' AND status:'succeeded'"}
    )
    assert len(both.data) == 1


def test_a_query_the_sandbox_does_not_speak_is_a_400(sandbox: Sandbox) -> None:
    response = sandbox.api("GET", "/v1/payment_intents/search", params={"query": "amount>100"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "query"


# ---- refunds: pending, succeeded, failed ---------------------------------------------------------


def test_a_refund_can_stay_pending_then_succeed(sandbox: Sandbox) -> None:
    intent = confirmed(sandbox, "pm_card_visa")
    refund = client(sandbox.url).v1.refunds.create(
        params={"payment_intent": intent["id"], "amount": 1000, "metadata": {"sandbox_pending": "true"}}
    )
    assert refund.status == "pending"
    listed = client(sandbox.url).v1.refunds.list(params={"payment_intent": intent["id"]})
    assert [r.id for r in listed.data] == [refund.id]
    assert control(sandbox.url, f"refunds/{refund.id}/succeed")["status"] == "succeeded"
    assert client(sandbox.url).v1.refunds.retrieve(refund.id).status == "succeeded"


def test_a_failed_refund_stops_counting_and_the_amount_can_be_refunded_again(sandbox: Sandbox) -> None:
    intent = confirmed(sandbox, "pm_card_visa")
    refund = client(sandbox.url).v1.refunds.create(params={"payment_intent": intent["id"]})
    assert refund.status == "succeeded"
    failed = control(sandbox.url, f"refunds/{refund.id}/fail", failureReason="lost_or_stolen_card")
    assert (failed["status"], failed["failure_reason"]) == ("failed", "lost_or_stolen_card")
    assert sandbox.stats("pay-1")["amountRefunded"] == 0
    again = client(sandbox.url).v1.refunds.create(params={"payment_intent": intent["id"]})
    assert again.amount == 2500


# ---- webhooks ------------------------------------------------------------------------------------


class Receiver:
    """A webhook endpoint on loopback that verifies with ``stripe`` and can fail on purpose."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.attempts = 0
        self.fail_next = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                payload = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.attempts += 1
                    failing = receiver.fail_next > 0
                    receiver.fail_next -= failing
                if failing:
                    self.send_response(500)
                    self.end_headers()
                    return
                event = stripe.Webhook.construct_event(payload, self.headers["Stripe-Signature"], SECRET)
                with receiver.lock:
                    receiver.events.append(json.loads(payload))
                assert event.id
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/webhooks/stripe"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def types(self) -> list[str]:
        with self.lock:
            return [e["type"] for e in self.events]

    def wait_for(self, *types: str, timeout: float = 15.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = self.types()
            if all(t in seen for t in types):
                return seen
            time.sleep(0.05)
        raise AssertionError(f"never received {types}; got {self.types()}")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture
def sending(receiver: Receiver) -> Iterator[Sandbox]:
    server = SandboxServer("127.0.0.1", 0, webhook_url=receiver.url, webhook_secret=SECRET)
    server.webhooks.first_delay = 0.05  # type: ignore[union-attr]
    server.start()
    yield Sandbox(server)
    server.stop()


def test_every_state_change_arrives_signed_as_stripe_signs(sending: Sandbox, receiver: Receiver) -> None:
    intent = confirmed(sending, "pm_card_threeDSecure2Required")
    receiver.wait_for("payment_intent.created", "payment_intent.requires_action")
    control(sending.url, f"payment_intents/{intent['id']}/authenticate", outcome="succeed")
    seen = receiver.wait_for("charge.succeeded", "payment_intent.succeeded")
    refund = client(sending.url).v1.refunds.create(params={"payment_intent": intent["id"], "amount": 500})
    control(sending.url, f"refunds/{refund.id}/fail")
    control(sending.url, f"payment_intents/{intent['id']}/dispute", reason="fraudulent")
    seen = receiver.wait_for(
        "refund.created", "charge.refunded", "refund.updated", "refund.failed", "charge.dispute.created"
    )
    assert seen.count("payment_intent.succeeded") == 1
    with receiver.lock:
        succeeded = next(e for e in receiver.events if e["type"] == "payment_intent.succeeded")
    assert succeeded["data"]["object"]["metadata"]["paymentId"] == "pay-1"


def test_a_bad_signature_is_what_stripe_rejects(sending: Sandbox) -> None:
    from app.payments_sandbox.webhooks import stripe_signature

    payload = b'{"id": "evt_1", "object": "event"}'
    header = stripe_signature(payload, "whsec_other", int(time.time()))
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, header, SECRET)


def test_a_failed_delivery_is_retried_until_it_is_accepted(sending: Sandbox, receiver: Receiver) -> None:
    receiver.fail_next = 2
    confirmed(sending, "pm_card_visa")
    receiver.wait_for("payment_intent.created", "charge.succeeded", "payment_intent.succeeded")
    assert receiver.attempts >= 5  # three events, two of whose first tries failed


def test_dropped_webhooks_are_lost_and_the_next_ones_arrive(sending: Sandbox, receiver: Receiver) -> None:
    sending.faults(dropWebhooks=3)
    lost = confirmed(sending, "pm_card_visa", **{"metadata[paymentId]": "pay-lost"})
    heard = confirmed(sending, "pm_card_visa", **{"metadata[paymentId]": "pay-heard"})
    receiver.wait_for("payment_intent.succeeded")
    time.sleep(0.3)  # give a wrongly delivered dropped event the time to show up
    with receiver.lock:
        intents = {
            e["data"]["object"].get("payment_intent") or e["data"]["object"]["id"] for e in receiver.events
        }
    assert intents == {heard["id"]} and lost["id"] not in intents
    assert len(sending.server.store.events) == 6  # the sandbox still recorded all of them
