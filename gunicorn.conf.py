"""gunicorn settings for the `web` process: sized and bound from the app's settings."""

from app.config import Settings

_settings = Settings.from_env()

bind = f"0.0.0.0:{_settings.PORT}"
workers = _settings.WEB_CONCURRENCY
worker_class = "gthread"
threads = 4
# Heroku gives a dyno 30 s between SIGTERM and SIGKILL: drain within that.
graceful_timeout = 25
timeout = 30
keepalive = 5
accesslog = None  # the app logs one JSON line per request
errorlog = "-"
max_requests = 5000
max_requests_jitter = 500
forwarded_allow_ips = "*"


def post_worker_init(worker):  # type: ignore[no-untyped-def]
    """From SIGTERM on, this worker answers /readyz with 503 while gunicorn drains it."""
    from app.lifecycle import drain_on_sigterm

    drain_on_sigterm(worker.wsgi, worker.handle_exit)
