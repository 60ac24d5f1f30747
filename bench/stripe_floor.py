"""The floor for ``POST /webhooks/stripe``: bare Flask doing only the signed-payload check.

    gunicorn 'bench.stripe_floor:create_app()' --config gunicorn.conf.py

One route that verifies ``Stripe-Signature`` with ``stripe.Webhook.construct_event`` (the helper
the application uses, same secret and tolerance) and answers 200 — no auth layer, no schema, no
database, no logging. Under the same gunicorn settings as the application, what is left between
the two is what the application adds: recording the event id once, looking the payment up, the
framework (smorest, problem+json, logging, metrics).
"""

from __future__ import annotations

import os

import stripe
from flask import Flask, Response, request


def create_app() -> Flask:
    secret = os.environ["STRIPE_WEBHOOK_SECRET"]
    app = Flask(__name__)

    @app.post("/webhooks/stripe")
    def receive() -> Response:
        try:
            event = stripe.Webhook.construct_event(
                request.get_data(as_text=True), request.headers.get("Stripe-Signature", ""), secret, 300
            )
        except (stripe.SignatureVerificationError, ValueError):
            return Response('{"status": 400}', status=400, mimetype="application/json")
        return Response(f'{{"received": true, "id": "{event["id"]}"}}', mimetype="application/json")

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("{}", mimetype="application/json")

    return app
