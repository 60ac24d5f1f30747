"""The payment sandbox speaks Stripe's wire format, so the official library works against it."""

from __future__ import annotations

import threading

import pytest
import requests
import stripe

from tests.sandbox import API_KEY, Sandbox, sandbox_fixture  # noqa: F401

CHARGE = {
    "amount": "1999",
    "currency": "usd",
    "payment_method": "pm_card_visa",
    "confirm": "true",
    "automatic_payment_methods[enabled]": "true",
    "automatic_payment_methods[allow_redirects]": "never",
    "metadata[paymentId]": "pay-1",
    "metadata[orderId]": "order-1",
}


def client(sandbox: Sandbox) -> stripe.StripeClient:
    return stripe.StripeClient(
        API_KEY,
        base_addresses={"api": sandbox.url},
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=5),
    )


def test_a_confirmed_payment_intent_with_a_test_card_succeeds(sandbox: Sandbox) -> None:
    response = sandbox.api("POST", "/v1/payment_intents", data=CHARGE)
    assert response.status_code == 200
    intent = response.json()
    assert intent["id"].startswith("pi_") and intent["object"] == "payment_intent"
    assert (intent["status"], intent["amount"], intent["amount_received"]) == ("succeeded", 1999, 1999)
    assert intent["currency"] == "usd" and intent["latest_charge"].startswith("ch_")
    assert intent["metadata"] == {"paymentId": "pay-1", "orderId": "order-1"}


def test_mastercard_succeeds_too(sandbox: Sandbox) -> None:
    response = sandbox.api(
        "POST", "/v1/payment_intents", data={**CHARGE, "payment_method": "pm_card_mastercard"}
    )
    assert response.json()["status"] == "succeeded"


@pytest.mark.parametrize(
    ("method", "decline_code"),
    [
        ("pm_card_chargeDeclined", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds"),
    ],
)
def test_declining_test_cards_answer_402_with_a_card_error(
    sandbox: Sandbox, method: str, decline_code: str
) -> None:
    response = sandbox.api("POST", "/v1/payment_intents", data={**CHARGE, "payment_method": method})
    assert response.status_code == 402
    error = response.json()["error"]
    assert (error["type"], error["code"], error["decline_code"]) == (
        "card_error",
        "card_declined",
        decline_code,
    )
    assert error["message"]
    assert error["payment_intent"]["status"] == "requires_payment_method"
    assert sandbox.stats("pay-1")["succeededCharges"] == 0


def test_an_unknown_payment_method_is_an_invalid_request(sandbox: Sandbox) -> None:
    response = sandbox.api("POST", "/v1/payment_intents", data={**CHARGE, "payment_method": "pm_nope"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "resource_missing",
        "payment_method",
    )


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"amount": "ten"}, "amount"),
        ({"amount": "0"}, "amount"),
        ({"currency": "dollars"}, "currency"),
        ({"surprise": "1"}, "surprise"),
    ],
)
def test_bad_parameters_are_answered_400_invalid_request_error(
    sandbox: Sandbox, change: dict[str, str], param: str
) -> None:
    response = sandbox.api("POST", "/v1/payment_intents", data={**CHARGE, **change})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.json()["error"]["param"] == param


def test_confirming_without_ruling_out_redirects_needs_a_return_url_like_stripe(sandbox: Sandbox) -> None:
    data = {k: v for k, v in CHARGE.items() if not k.startswith("automatic_payment_methods")}
    response = sandbox.api("POST", "/v1/payment_intents", data=data)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "return_url"


def test_requests_without_an_api_key_are_401(sandbox: Sandbox) -> None:
    import requests

    response = requests.post(f"{sandbox.url}/v1/payment_intents", data=CHARGE, timeout=5)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_a_missing_payment_intent_is_404_resource_missing(sandbox: Sandbox) -> None:
    response = sandbox.api("GET", "/v1/payment_intents/pi_missing")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "resource_missing"


def test_a_payment_intent_can_be_retrieved(sandbox: Sandbox) -> None:
    created = sandbox.api("POST", "/v1/payment_intents", data=CHARGE).json()
    fetched = sandbox.api("GET", f"/v1/payment_intents/{created['id']}").json()
    assert fetched == created


def test_the_list_is_newest_first_and_paginates(sandbox: Sandbox) -> None:
    ids = [sandbox.api("POST", "/v1/payment_intents", data=CHARGE).json()["id"] for _ in range(3)]
    page = sandbox.api("GET", "/v1/payment_intents", params={"limit": 2}).json()
    assert page["object"] == "list" and page["has_more"] is True
    assert [i["id"] for i in page["data"]] == [ids[2], ids[1]]
    rest = sandbox.api("GET", "/v1/payment_intents", params={"limit": 2, "starting_after": ids[1]}).json()
    assert [i["id"] for i in rest["data"]] == [ids[0]] and rest["has_more"] is False


def test_the_same_idempotency_key_and_parameters_replay_the_first_response(sandbox: Sandbox) -> None:
    first = sandbox.api("POST", "/v1/payment_intents", data=CHARGE, headers={"Idempotency-Key": "k1"})
    again = sandbox.api("POST", "/v1/payment_intents", data=CHARGE, headers={"Idempotency-Key": "k1"})
    assert again.status_code == 200 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert sandbox.stats("pay-1")["charges"] == 1


def test_a_declined_request_is_replayed_as_declined(sandbox: Sandbox) -> None:
    data = {**CHARGE, "payment_method": "pm_card_chargeDeclined"}
    first = sandbox.api("POST", "/v1/payment_intents", data=data, headers={"Idempotency-Key": "k2"})
    again = sandbox.api("POST", "/v1/payment_intents", data=data, headers={"Idempotency-Key": "k2"})
    assert (first.status_code, again.status_code) == (402, 402)
    assert again.json() == first.json()
    assert sandbox.stats("pay-1")["charges"] == 1


def test_the_same_idempotency_key_with_other_parameters_is_an_idempotency_error(sandbox: Sandbox) -> None:
    sandbox.api("POST", "/v1/payment_intents", data=CHARGE, headers={"Idempotency-Key": "k3"})
    other = sandbox.api(
        "POST", "/v1/payment_intents", data={**CHARGE, "amount": "1"}, headers={"Idempotency-Key": "k3"}
    )
    assert other.status_code == 400
    assert other.json()["error"]["type"] == "idempotency_error"


def test_concurrent_requests_with_one_key_create_one_payment_intent(sandbox: Sandbox) -> None:
    results: list[str] = []
    barrier = threading.Barrier(8)

    def charge() -> None:
        barrier.wait()
        response = sandbox.api("POST", "/v1/payment_intents", data=CHARGE, headers={"Idempotency-Key": "k4"})
        results.append(response.json()["id"])

    threads = [threading.Thread(target=charge) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert sandbox.stats("pay-1")["paymentIntents"] == 1


def test_a_refund_returns_the_charge_once(sandbox: Sandbox) -> None:
    intent = sandbox.api("POST", "/v1/payment_intents", data=CHARGE).json()
    partial = sandbox.api("POST", "/v1/refunds", data={"payment_intent": intent["id"], "amount": "999"})
    assert partial.status_code == 200
    refund = partial.json()
    assert refund["id"].startswith("re_") and refund["object"] == "refund"
    assert (refund["amount"], refund["status"], refund["payment_intent"]) == (999, "succeeded", intent["id"])
    rest = sandbox.api("POST", "/v1/refunds", data={"payment_intent": intent["id"]}).json()
    assert rest["amount"] == 1000
    again = sandbox.api("POST", "/v1/refunds", data={"payment_intent": intent["id"]})
    assert again.status_code == 400 and again.json()["error"]["code"] == "charge_already_refunded"
    assert sandbox.stats("pay-1")["amountRefunded"] == 1999


def test_a_declined_payment_cannot_be_refunded(sandbox: Sandbox) -> None:
    declined = sandbox.api(
        "POST", "/v1/payment_intents", data={**CHARGE, "payment_method": "pm_card_chargeDeclined"}
    )
    intent_id = declined.json()["error"]["payment_intent"]["id"]
    response = sandbox.api("POST", "/v1/refunds", data={"payment_intent": intent_id})
    assert response.status_code == 400


def test_injected_failures_answer_the_next_n_calls_then_stop(sandbox: Sandbox) -> None:
    sandbox.faults(failNext=2, status=503)
    statuses = [
        sandbox.api("POST", "/v1/payment_intents", data=CHARGE, headers={"Idempotency-Key": "k5"})
        for _ in range(3)
    ]
    assert [r.status_code for r in statuses] == [503, 503, 200]
    assert statuses[0].json()["error"]["type"] == "api_error"
    # A failed call was not remembered under its key: the third one really charged.
    assert "Idempotent-Replayed" not in statuses[2].headers
    assert sandbox.stats("pay-1")["succeededCharges"] == 1


def test_clearing_faults_stops_them(sandbox: Sandbox) -> None:
    sandbox.faults(failNext=5, status=500)
    sandbox.clear_faults()
    assert sandbox.api("POST", "/v1/payment_intents", data=CHARGE).status_code == 200


def test_a_delayed_refund_answer_comes_after_the_refund_was_made_and_its_key_replays_it(
    sandbox: Sandbox,
) -> None:
    """``delayRefundMs`` holds only the answer of ``POST /v1/refunds``: the refund exists at once,
    so a client that gave up (or died) meanwhile finds it made; its retry under the same key gets
    the same refund back, never a second one."""
    intent = sandbox.api("POST", "/v1/payment_intents", data=CHARGE).json()
    sandbox.faults(delayRefundMs=5000)
    assert requests.get(f"{sandbox.url}/_sandbox/faults", timeout=5).json()["delayRefundMs"] == 5000
    refund = {"payment_intent": intent["id"], "amount": "500", "metadata[refundId]": "r-1"}
    with pytest.raises(requests.ReadTimeout):  # the client gives up long before the answer
        requests.post(
            f"{sandbox.url}/v1/refunds",
            data=refund,
            headers={"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": "refund-r-1"},
            timeout=(5, 0.5),
        )
    # Made all the same, and the other calls are not held (a GET, a charge).
    [made] = sandbox.api("GET", "/v1/refunds", params={"payment_intent": intent["id"]}).json()["data"]
    assert (made["amount"], made["status"], made["metadata"]) == (500, "succeeded", {"refundId": "r-1"})
    assert sandbox.api("POST", "/v1/payment_intents", data=CHARGE).status_code == 200
    sandbox.clear_faults()
    assert requests.get(f"{sandbox.url}/_sandbox/faults", timeout=5).json()["delayRefundMs"] == 0
    again = sandbox.api("POST", "/v1/refunds", data=refund, headers={"Idempotency-Key": "refund-r-1"})
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == made["id"]
    assert (sandbox.stats("pay-1")["refunds"], sandbox.stats("pay-1")["amountRefunded"]) == (1, 500)


def test_fault_values_are_checked(sandbox: Sandbox) -> None:
    for body in ({"delayRefundMs": -1}, {"delayRefundMs": "5"}, {"delayRefundMs": True}, {"holdMs": 1}):
        response = requests.post(f"{sandbox.url}/_sandbox/faults", json=body, timeout=5)
        assert response.status_code == 400, body


def test_the_official_library_parses_the_sandbox_answers(sandbox: Sandbox) -> None:
    stripe_client = client(sandbox)
    params = {
        "amount": 500,
        "currency": "usd",
        "payment_method": "pm_card_visa",
        "confirm": True,
        "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
        "metadata": {"paymentId": "lib-1"},
    }
    intent = stripe_client.v1.payment_intents.create(params, {"idempotency_key": "lib-1"})  # type: ignore[arg-type]
    assert intent.status == "succeeded" and intent.metadata["paymentId"] == "lib-1"
    with pytest.raises(stripe.CardError) as declined:
        stripe_client.v1.payment_intents.create({**params, "payment_method": "pm_card_chargeDeclined"})  # type: ignore[arg-type]
    assert declined.value.http_status == 402 and declined.value.code == "card_declined"
    with pytest.raises(stripe.IdempotencyError):
        stripe_client.v1.payment_intents.create({**params, "amount": 501}, {"idempotency_key": "lib-1"})  # type: ignore[arg-type]
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.payment_intents.retrieve("pi_missing")
    sandbox.faults(failNext=1, status=429)
    with pytest.raises(stripe.RateLimitError):
        stripe_client.v1.payment_intents.retrieve(intent.id)
    sandbox.faults(failNext=1, status=502)
    with pytest.raises(stripe.APIError):
        stripe_client.v1.payment_intents.retrieve(intent.id)
    assert [i.id for i in stripe_client.v1.payment_intents.list({"limit": 1}).auto_paging_iter()][
        -1
    ] == intent.id
