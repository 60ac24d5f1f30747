"""Operations endpoints: liveness, readiness and metrics."""

from __future__ import annotations

import hmac
from typing import Any

import marshmallow as ma
import redis
from flask import Response, current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint

from app.api.errors import problem
from app.api.security import public
from app.domain.errors import Unauthorized
from app.lifecycle import is_draining
from app.observability import metrics_response
from app.services.ops import database_ping

blp = Blueprint("ops", __name__, description="Health, readiness and metrics")


class HealthSchema(ma.Schema):
    status = ma.fields.String(required=True, metadata={"example": "ok"})


class DependencySchema(ma.Schema):
    status = ma.fields.String(required=True, metadata={"example": "ok"})
    error = ma.fields.String()


class ReadinessSchema(ma.Schema):
    status = ma.fields.String(required=True)
    draining = ma.fields.Boolean(required=True)
    database = ma.fields.Nested(DependencySchema, required=True)
    redis = ma.fields.Nested(DependencySchema, required=True)


def _check_database() -> dict[str, Any]:
    try:
        database_ping()
        return {"status": "ok"}
    except Exception as exc:
        return {"status": "down", "error": type(exc).__name__}


def _check_redis() -> dict[str, Any]:
    try:
        client = redis.Redis.from_url(
            current_app.config["REDIS_URL"], socket_connect_timeout=0.5, socket_timeout=0.5
        )
        try:
            client.ping()
        finally:
            client.close()
        return {"status": "ok"}
    except Exception as exc:
        return {"status": "down", "error": type(exc).__name__}


@blp.route("/healthz")
class Health(MethodView):
    @public
    @blp.response(200, HealthSchema)
    def get(self) -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}


@blp.route("/readyz")
class Ready(MethodView):
    @public
    @blp.response(200, ReadinessSchema)
    def get(self) -> Any:
        """Readiness: 200 when Postgres answers and the process is not draining; Redis is reported."""
        database = _check_database()
        draining = is_draining(current_app._get_current_object())  # type: ignore[attr-defined]
        redis_state = _check_redis()
        if database["status"] != "ok" or draining:
            return problem(
                503,
                "draining" if draining else "the database is unavailable",
                headers={"Retry-After": "5"},
                draining=draining,
                database=database,
                redis=redis_state,
            )
        return {"status": "ok", "draining": False, "database": database, "redis": redis_state}


@blp.route("/metrics")
class Metrics(MethodView):
    @public
    @blp.response(200, description="Prometheus text exposition format", content_type="text/plain")
    @blp.alt_response(401, response="UNAUTHORIZED", description="METRICS_TOKEN is set and was not sent")
    def get(self) -> Response:
        """Prometheus metrics (with `Authorization: Bearer <METRICS_TOKEN>` when that is set)."""
        require_metrics_token(current_app.config.get("METRICS_TOKEN", ""))
        return metrics_response(current_app._get_current_object())  # type: ignore[attr-defined]


def require_metrics_token(expected: str) -> None:
    """Versions and business counts are not for everyone: a scraper presents the shared token."""
    if not expected:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise Unauthorized("GET /metrics requires Authorization: Bearer <METRICS_TOKEN>")
