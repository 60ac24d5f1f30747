"""gunicorn settings for the `web` process: sized and bound from the app's settings."""

import os
import tempfile

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
# No recycling after N requests: a recycled gthread worker closes its idle keep-alive connections,
# and a client that had just sent a request on one gets "connection reset" (the soak saw exactly
# that, docs/soak.md). Memory stays flat without it (docs/soak.json), so recycling buys nothing.
max_requests = 0
# gunicorn believes X-Forwarded-Proto/-For only from these peers. With no proxy in front
# (TRUSTED_PROXY_COUNT=0, the default) nobody is believed: a client cannot claim https or another
# address. Behind N proxies (Heroku's router: 1) the nearest proxy's address is not fixed, so its
# headers are accepted and the app's ProxyFix takes exactly N hops of them, no more.
forwarded_allow_ips = "*" if _settings.TRUSTED_PROXY_COUNT else ""


def post_worker_init(worker):  # type: ignore[no-untyped-def]
    """From SIGTERM on, this worker answers /readyz with 503 while gunicorn drains it."""
    from app.lifecycle import drain_on_sigterm

    drain_on_sigterm(worker.wsgi, worker.handle_exit)


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    """A worker that exited (restart, crash): its live gauges leave the sum (its counters stay)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_starting(server):  # type: ignore[no-untyped-def]
    """Prometheus multiprocess mode: every worker writes its samples under PROMETHEUS_MULTIPROC_DIR
    and /metrics answers their sum, whichever worker takes the scrape. Set in the master before
    any worker is forked (and imports prometheus_client); a directory of this master's own unless
    the environment names one."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="oms-metrics-web-")
