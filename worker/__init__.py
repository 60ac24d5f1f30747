"""The Celery entry point: ``celery --app worker worker`` / ``celery --app worker beat``."""

from __future__ import annotations

from celery import Celery

from app import create_app

flask_app = create_app()
celery: Celery = flask_app.extensions["celery"]
# Web requests publish with a 1 s socket timeout; worker and beat can afford to wait longer.
celery.conf.broker_transport_options = {**celery.conf.broker_transport_options, "socket_timeout": 5}
app = celery
