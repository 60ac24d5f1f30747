"""A web worker that received SIGTERM reports itself not ready while gunicorn drains it."""

from __future__ import annotations

import runpy
import signal
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from flask import Flask

from app.lifecycle import DRAINING

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def restore_sigterm(app: Flask) -> Iterator[None]:
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)
    app.extensions.pop(DRAINING, None)


def test_after_sigterm_readyz_answers_503_draining_and_gunicorn_still_drains(app, client, restore_sigterm):
    gunicorn_exits: list[int] = []
    hooks = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    worker = SimpleNamespace(wsgi=app, handle_exit=lambda signum, frame: gunicorn_exits.append(signum))
    hooks["post_worker_init"](worker)
    assert client.get("/readyz").status_code == 200

    signal.raise_signal(signal.SIGTERM)

    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["Retry-After"]
    assert response.json["draining"] is True
    assert response.json["database"]["status"] == "ok"
    assert gunicorn_exits == [signal.SIGTERM]  # gunicorn's own handler still runs: it drains


def test_liveness_stays_200_while_draining(app, client, restore_sigterm):
    from app.lifecycle import mark_draining

    mark_draining(app)
    assert client.get("/healthz").status_code == 200
