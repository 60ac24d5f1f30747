"""The Celery entry point: ``celery --app worker worker`` / ``celery --app worker beat``.

The Flask app (and with it the Celery app) is built on first access of ``worker.celery`` /
``worker.app``, so importing ``worker.tasks`` inside an existing app (tests, the web process)
does not build a second one.
"""

from __future__ import annotations

from typing import Any

_cache: dict[str, Any] = {}


def _build() -> dict[str, Any]:
    if not _cache:
        from app import create_app

        flask_app = create_app()
        celery = flask_app.extensions["celery"]
        # Web requests publish with a 1 s socket timeout; worker and beat can afford to wait longer.
        celery.conf.broker_transport_options = {**celery.conf.broker_transport_options, "socket_timeout": 5}
        from app.adapters.queue import DEFAULT_QUEUE, NOTIFICATIONS_QUEUE
        from app.task_metrics import serve_worker_metrics

        serve_worker_metrics(celery, flask_app.config, (DEFAULT_QUEUE, NOTIFICATIONS_QUEUE))
        _cache.update(flask_app=flask_app, celery=celery, app=celery)
    return _cache


def __getattr__(name: str) -> Any:
    if name in ("flask_app", "celery", "app"):
        return _build()[name]
    raise AttributeError(name)
