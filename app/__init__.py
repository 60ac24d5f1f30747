"""Order-management backend: ``create_app()`` wires config → extensions → blueprints → errors → Celery."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app.config import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the application; ``config`` overrides settings (as the environment would) and Flask keys."""
    from app.adapters.passwords import limit_concurrency as limit_hashing
    from app.adapters.queue import celery_init_app
    from app.api.errors import register_error_handlers
    from app.api.openapi import ProblemResponsesPlugin
    from app.api.routes import api, register_blueprints
    from app.api.security import check_policies, init_security
    from app.cli import register_cli
    from app.extensions import db, jwt, limiter, migrate
    from app.log import configure_logging
    from app.middleware import init_middleware
    from app.observability import drop_retry_after_unless_refused, init_observability

    overrides = dict(config or {})
    settings = Settings.from_env(overrides=overrides)
    app = Flask(__name__, static_folder=None)  # an API: no static files, no undocumented route
    app.config.from_mapping(settings.as_flask_config())
    app.config.update(overrides)
    app.config["SETTINGS"] = settings
    configure_logging(app.config["LOG_LEVEL"])
    limit_hashing(settings.PASSWORD_HASH_CONCURRENCY, settings.PASSWORD_HASH_WAIT_SECONDS)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR), compare_type=True)
    api.init_app(
        app,
        spec_kwargs={
            "extra_plugins": [ProblemResponsesPlugin()],
            "info": {"description": _API_DESCRIPTION},
            "components": {
                "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
            },
        },
    )
    jwt.init_app(app)
    if app.config["TRUSTED_PROXY_COUNT"]:
        hops = int(app.config["TRUSTED_PROXY_COUNT"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    # before_request hooks run in this order: the request id, then the access policy (which
    # verifies the token once), then the rate limits (a per-user limit keys on the verified actor).
    init_observability(app)
    init_security(app)
    # after_request hooks run in reverse order: this one runs after the limiter has added its headers.
    app.after_request(drop_retry_after_unless_refused)
    limiter.init_app(app)
    register_blueprints(api)
    register_error_handlers(app)
    celery_init_app(app)
    register_cli(app)
    check_policies(app)
    init_middleware(app, limiter)
    return app


_API_DESCRIPTION = """\
REST backend for shops: carts, orders that never oversell, payments charged exactly once by
background workers, notifications with retries and stock reconciliation.

Conventions: JSON in camelCase; ids are opaque strings; money is a JSON number with two decimals
and responses carry `currency`; every error is an RFC 9457 `application/problem+json` body with
`type`, `title`, `status`, `detail` (and `errors` for validation). Lists are paginated with `page`
and `pageSize` (1–100). Authenticate with `Authorization: Bearer <accessToken>` from
`POST /auth/token`. Every response carries `X-Request-ID`.
"""
