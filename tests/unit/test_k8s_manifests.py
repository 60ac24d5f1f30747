"""SPEC §5.9: the Kubernetes manifests under deploy/k8s/ are valid and keep the deployment promises.

Validated offline against the Kubernetes OpenAPI schemas that the ``kubernetes-validate`` wheel
ships (no cluster, no network).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from app.adapters.queue import celery_config
from app.config import Settings

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30.0"


def documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return found


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in documents() if doc["kind"] == kind}


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (only,) = workload["spec"]["template"]["spec"]["containers"]
    return only


@pytest.mark.parametrize(("name", "doc"), documents(), ids=[n for n, _ in documents()])
def test_every_manifest_is_valid_against_the_kubernetes_schema(name, doc):
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)  # raises on any error


def test_the_manifests_hold_every_part_of_the_deployment():
    kinds = {(doc["kind"], doc["metadata"]["name"]) for _, doc in documents()}
    assert {
        ("Deployment", "oms-web"),
        ("Deployment", "oms-worker"),
        ("Deployment", "oms-webhooks"),
        ("Deployment", "oms-beat"),
        ("Job", "oms-migrate"),
        ("Service", "oms-web"),
        ("PodDisruptionBudget", "oms-web"),
        ("HorizontalPodAutoscaler", "oms-web"),
        ("ConfigMap", "oms-config"),
    } <= kinds


def test_web_is_probed_and_rolls_out_without_dropping_below_the_desired_replicas():
    web = by_kind("Deployment")["oms-web"]
    assert web["spec"]["strategy"]["type"] == "RollingUpdate"
    assert web["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    c = container(web)
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
    # The pause lets the load balancer stop routing before gunicorn drains; both fit in the grace.
    pause = int(c["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pause >= 5
    grace = web["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > pause + gunicorn_setting("graceful_timeout")
    # The HPA scales that Deployment, and the Service routes to its pods.
    hpa = by_kind("HorizontalPodAutoscaler")["oms-web"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "oms-web"
    assert hpa["spec"]["minReplicas"] >= 2
    selector = by_kind("Service")["oms-web"]["spec"]["selector"]
    assert selector.items() <= web["spec"]["template"]["metadata"]["labels"].items()


def gunicorn_setting(name: str) -> Any:
    """A literal assignment of gunicorn.conf.py, read without running it."""
    tree = ast.parse((K8S.parents[1] / "gunicorn.conf.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise LookupError(name)


def test_every_pod_has_resource_requests_and_its_settings_from_the_configmap_and_secret():
    pods = [d["spec"]["template"]["spec"] for d in by_kind("Deployment").values()]
    pods += [j["spec"]["template"]["spec"] for j in by_kind("Job").values()]
    for pod in pods:
        for c in pod["containers"]:
            assert {"cpu", "memory"} <= set(c["resources"]["requests"])
            refs = {next(iter(ref)): next(iter(ref.values()))["name"] for ref in c["envFrom"]}
            assert refs == {"configMapRef": "oms-config", "secretRef": "oms-secrets"}
    assert by_kind("PodDisruptionBudget")


def test_the_migration_runs_as_a_job_before_the_rollout():
    job = by_kind("Job")["oms-migrate"]
    assert container(job)["command"] == ["flask", "--app", "app", "db", "upgrade"]
    assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PreSync"
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_worker_grace_outlasts_the_longest_task_and_beat_is_a_single_recreated_pod():
    deployments = by_kind("Deployment")
    offline = {"DATABASE_URL": "postgresql://offline@127.0.0.1:9/x", "REDIS_URL": "redis://127.0.0.1:9/0"}
    settings = Settings.from_env({"APP_ENV": "development", **offline})
    longest_task = celery_config(settings.as_flask_config())["task_time_limit"]
    for name in ("oms-worker", "oms-webhooks"):
        worker = deployments[name]
        assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > longest_task
        assert worker["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    beat = deployments["oms-beat"]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
