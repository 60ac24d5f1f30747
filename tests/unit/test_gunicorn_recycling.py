"""The web process never recycles its workers on a request count.

The soak (bench/soak.py) found that gunicorn's ``max_requests`` recycling of a gthread worker
resets the idle keep-alive connections it holds: a client that had just sent a request on one got
"connection reset by peer" — a failed request with no server error logged. RSS stays flat without
recycling, so it stays off; restarts happen only on deploys, through the graceful SIGTERM drain.
"""

import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gunicorn_does_not_recycle_workers_after_a_request_count():
    settings = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert settings.get("max_requests", 0) == 0
