"""A Stripe-compatible payment sandbox for development and tests (never used in production).

It serves the part of Stripe's v1 REST API that the gateway adapter uses, keeps everything in
memory for its lifetime, and lets tests inject faults (``/_sandbox/faults``) and count charges
(``/_sandbox/stats``). Start it with ``flask --app app payments-sandbox --host H --port P``.
"""

from app.payments_sandbox.server import SandboxServer, create_sandbox_app
from app.payments_sandbox.store import Store

__all__ = ["SandboxServer", "Store", "create_sandbox_app"]
