"""Process lifecycle: a web worker that starts draining tells the load balancer at once.

gunicorn drains a worker on SIGTERM (it stops accepting, finishes in-flight requests within
``graceful_timeout``, then exits). ``drain_on_sigterm`` wraps gunicorn's handler so that, from the
first SIGTERM on, ``/readyz`` answers 503 ``draining`` for the requests this worker still serves.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

from flask import Flask

from app.log import get_logger

DRAINING = "oms_draining"

log = get_logger(__name__)

SignalHandler = Callable[[int, FrameType | None], Any]


def is_draining(app: Flask) -> bool:
    return bool(app.extensions.get(DRAINING, False))


def mark_draining(app: Flask) -> None:
    """From now on this process reports itself not ready (``/readyz`` → 503)."""
    if not is_draining(app):
        app.extensions[DRAINING] = True
        log.info("draining", reason="SIGTERM")


def drain_on_sigterm(app: Flask, then: SignalHandler) -> None:
    """On SIGTERM mark ``app`` draining, then defer to ``then`` (gunicorn's own graceful exit)."""

    def _on_sigterm(signum: int, frame: FrameType | None) -> None:
        mark_draining(app)
        then(signum, frame)

    signal.signal(signal.SIGTERM, _on_sigterm)
