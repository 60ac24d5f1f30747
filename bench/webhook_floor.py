"""The floor for webhook deliveries, and the receiver both measurements post to.

    python -m bench.webhook_floor receive --port P        # answers 204 at once to every POST
    celery --app bench.webhook_floor worker --concurrency 2 --queues bench-webhook-floor …

The floor is a bare Celery task that makes the same HTTP POST a delivery makes (same body, same
headers, ``http.client``, no redirects), with the worker settings the application uses: what is
left of a delivery's cost is what our delivery adds (the claim, the SSRF check, signing, the
outcome written to Postgres).
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from celery import Celery

QUEUE = "bench-webhook-floor"
POST = "bench.webhook_post"

app = Celery("bench-webhook-floor", broker=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_backend=None,
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_default_queue=QUEUE,
    worker_hijack_root_logger=False,
    worker_send_task_events=False,
    broker_connection_retry_on_startup=True,
    broker_transport_options={"visibility_timeout": 7200},
)


@app.task(name=POST)
def webhook_post(url: str, headers: dict[str, str], body: str) -> int:
    """One POST, as a delivery makes it; the status is the result."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=10)
    try:
        connection.request("POST", parts.path or "/", body=body.encode(), headers=headers)
        response = connection.getresponse()
        response.read(64 * 1024)
        return response.status
    finally:
        connection.close()


class _Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["receive"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), _Receiver)
    server.daemon_threads = True
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
