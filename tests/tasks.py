"""Run Celery tasks for real, eagerly, in the test app.

``shared_task`` proxies resolve to Celery's *default* app, which is whichever app was built last —
possibly another test's app with other settings. Going through ``app.extensions["celery"]`` runs
the task in the app (and config) the test is using. Eager ``apply`` also runs a task's retries at
once, without their countdown.
"""

from __future__ import annotations

from typing import Any

from flask import Flask


def run_task(app: Flask, name: str, *args: Any) -> Any:
    import worker.tasks  # noqa: F401  (registers the shared tasks with every Celery app)

    return app.extensions["celery"].tasks[name].apply(args=list(args)).get()
