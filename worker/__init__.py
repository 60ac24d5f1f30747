"""The Celery entry point: ``celery --app worker worker`` / ``celery --app worker beat``."""

from __future__ import annotations

from celery import Celery

from app import create_app

flask_app = create_app()
celery: Celery = flask_app.extensions["celery"]
app = celery
