"""docs/grafana-dashboard.json and docs/prometheus-alerts.yml load, and use only metrics the app exposes.

With ``promtool`` (Debian's ``prometheus`` package, installed here when missing) the alert rules
are checked and unit-tested (docs/prometheus-alerts.test.yml), and every dashboard query is checked
as PromQL by wrapping it in a recording rule. Without it (no root, no apt), the files are parsed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from app.task_metrics import store_status_counts, worker_registry

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"
ALERTS = ROOT / "docs" / "prometheus-alerts.yml"
ALERT_TESTS = ROOT / "docs" / "prometheus-alerts.test.yml"
METRIC = re.compile(r"\b(oms_[a-z0-9_]+)\b")


def family_names(text: str) -> set[str]:
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names |= {family.name + suffix for suffix in ("_bucket", "_sum", "_count")}
    return names


@pytest.fixture
def exposed(app, client, redis_url) -> set[str]:
    """Every metric name the web's /metrics and the worker's endpoint expose."""
    store_status_counts(redis_url, {"COMPLETED": 1}, {"FAILED": 0})
    client.get("/healthz")
    web = client.get("/metrics").get_data(as_text=True)
    worker = generate_latest(worker_registry(redis_url, ("oms", "oms.notifications"))).decode()
    return {name for name in family_names(web) | family_names(worker) if name.startswith("oms_")}


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def promtool() -> str | None:
    found = shutil.which("promtool")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-qq", "prometheus"],
    ):
        if subprocess.run(command, env=env, capture_output=True, timeout=900).returncode != 0:
            return None
    return shutil.which("promtool")


def test_the_dashboard_covers_the_operating_questions_with_exposed_metrics(exposed):
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["panels"]
    titles = " | ".join(panel["title"].lower() for panel in dashboard["panels"])
    for topic in (
        "route and status",
        "latency",
        "checkouts",
        "payments by state",
        "queue depth",
        "outbox lag",
    ):
        assert topic in titles, topic
    assert "circuit breakers" in titles
    for title, expr in dashboard_queries():
        used = set(METRIC.findall(expr))
        assert used, (title, expr)
        assert used <= exposed, (title, used - exposed)


def test_the_alert_rules_watch_what_reliability_cares_about_with_exposed_metrics(exposed):
    rules = {rule["alert"]: rule for rule in alert_rules()}
    for name in (
        "OmsOutboxLagging",
        "OmsQueueGrowing",
        "OmsCircuitBreakerOpen",
        "OmsFailedNotificationsGrowing",
    ):
        assert name in rules, name
    for name, rule in rules.items():
        assert (
            rule["expr"] and rule["labels"]["severity"] in ("page", "warn") and rule["annotations"]["summary"]
        )
        used = set(METRIC.findall(rule["expr"]))
        assert used and used <= exposed, (name, used - exposed)


def test_promtool_checks_the_rules_their_unit_tests_and_the_dashboard_queries(tmp_path):
    tool = promtool()
    if tool is None:
        pytest.skip("promtool unavailable (Debian's prometheus package could not be installed): parsed only")
    checked = subprocess.run(
        [tool, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [tool, "test", "rules", ALERT_TESTS.name],
        cwd=ALERT_TESTS.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr
    recording = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query{i}", "expr": expr}
                    for i, (_, expr) in enumerate(dashboard_queries())
                ],
            }
        ]
    }
    wrapped = tmp_path / "dashboard-queries.yml"
    wrapped.write_text(yaml.safe_dump(recording))
    queries = subprocess.run(
        [tool, "check", "rules", str(wrapped)], capture_output=True, text=True, timeout=60
    )
    assert queries.returncode == 0, queries.stdout + queries.stderr
