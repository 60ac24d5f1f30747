"""Fixtures shared by every tier: a private Postgres database and Redis db per xdist worker."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import make_url, text

TABLES_KEPT = {"alembic_version"}
# Generated per run: no signing key is written in the repository (SPEC §5.10).
TEST_SECRET_KEY = secrets.token_hex(32)


def _worker_index(worker_id: str) -> int:
    return int(worker_id[2:]) if worker_id.startswith("gw") else 0


def _require(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.exit(f"{name} is not set: run the suite with `make test`", returncode=2)
    return value


def server_dsn(url: str, database: str) -> str:
    """A libpq DSN for another database on the same server as ``url``."""
    return make_url(url).set(drivername="postgresql", database=database).render_as_string(hide_password=False)


def create_database(base_url: str, name: str) -> str:
    """Drop and create ``name`` on the server of ``base_url``; returns its URL."""
    admin = make_url(base_url).database or "postgres"
    with psycopg.connect(server_dsn(base_url, admin), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_dsn(base_url, name)


@pytest.fixture(scope="session")
def worker_id(request: pytest.FixtureRequest) -> str:
    """The xdist worker name ("gw0", …), or "master" without xdist (works with -p no:xdist)."""
    workerinput = getattr(request.config, "workerinput", None)
    return str(workerinput["workerid"]) if workerinput else "master"


@pytest.fixture(scope="session")
def worker_index(worker_id: str) -> int:
    return _worker_index(worker_id)


def schema_from_a_newer_release() -> bool:
    """N-1 compatibility runs (scripts/n1_compat.sh, docs/deploy.md): TEST_DATABASE_URL names a
    database that the NEXT release has already migrated. This suite then uses it as it is: no
    re-create and no ``upgrade()`` (its own migrations do not know that head). Keep this switch."""
    return os.environ.get("TEST_DATABASE_PREMIGRATED") == "1"


@pytest.fixture(scope="session")
def database_url(worker_id: str) -> str:
    base = _require("TEST_DATABASE_URL")
    if schema_from_a_newer_release():
        if worker_id != "master":
            pytest.exit("TEST_DATABASE_PREMIGRATED=1 shares one database: run with -p no:xdist", returncode=2)
        return server_dsn(base, make_url(base).database or "oms")
    return create_database(base, f"{make_url(base).database or 'oms'}_{worker_id}")


@pytest.fixture(scope="session")
def redis_url(worker_index: int) -> str:
    base = make_url(_require("TEST_REDIS_URL").replace("redis://", "postgresql://", 1))
    db = (int(base.database or 0) + worker_index) % 16
    return f"redis://{base.host or '127.0.0.1'}:{base.port or 6379}/{db}"


def make_app(database_url: str, redis_url: str, **overrides: Any) -> Flask:
    from app import create_app

    config: dict[str, Any] = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "AUTH_RATE_LIMIT": "1000/minute",
        "AUTH_ACCOUNT_RATE_LIMIT": "1000/minute",
        "SIGNUP_RATE_LIMIT": "1000/minute",
        "CHECKOUT_RATE_LIMIT": "1000/minute",
        "STRIPE_API_BASE": "http://127.0.0.1:9",  # tests that charge start their own sandbox
        "SMTP_URL": "smtp://127.0.0.1:9",
        "LOG_LEVEL": "WARNING",
        "SECRET_KEY": TEST_SECRET_KEY,
    }
    config.update(overrides)
    application = create_app(config)
    # Flask-Limiter is one global object, re-initialised by every app built here. A previous app
    # whose Redis was unreachable left it in its in-memory fallback, which ``init_app`` does not
    # reset: the new app's first requests were then counted in memory and the next ones in Redis
    # (a rate-limit test saw its second request pass, depending on which tests ran before it).
    from app.extensions import limiter

    limiter._storage_dead = False
    return application


@pytest.fixture(scope="session")
def app(database_url: str, redis_url: str) -> Iterator[Flask]:
    from flask_migrate import upgrade

    application = make_app(database_url, redis_url)
    application.config["TESTING"] = True
    with application.app_context():
        if not schema_from_a_newer_release():
            upgrade()
    yield application


@pytest.fixture(autouse=True)
def _clean_state(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test that touches the database starts from the migrated, empty schema."""
    yield
    if "app" not in request.fixturenames:
        return
    application: Flask = request.getfixturevalue("app")
    from app.extensions import db

    with application.app_context():
        db.session.remove()
        tables = [t for t in db.metadata.sorted_tables if t.name not in TABLES_KEPT]
        db.session.execute(
            text("TRUNCATE " + ", ".join(f'"{t.name}"' for t in tables) + " RESTART IDENTITY CASCADE")
        )
        db.session.execute(
            text(
                "INSERT INTO features (name, enabled, description, updated_at) VALUES "
                "('checkout', true, 'POST /orders accepts new orders', now()), "
                "('returns', true, 'Customers request returns of delivered orders', now()), "
                "('payment-retry', true, 'Customers retry a failed payment', now())"
            )
        )
        db.session.commit()
    redis.Redis.from_url(application.config["REDIS_URL"]).flushdb()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def app_ctx(app: Flask) -> Iterator[Flask]:
    with app.app_context():
        yield app


# ---- users and tokens -------------------------------------------------------------------------


@pytest.fixture
def make_user(app: Flask) -> Any:
    """Create a user directly (fast path for tests that are not about users)."""
    from app.adapters.passwords import hash_password
    from app.domain.users import User
    from app.extensions import db

    hashed = hash_password("correct horse battery")

    def _make(role: str = "customer", email: str | None = None, name: str = "Test User") -> User:
        with app.app_context():
            user = User(
                email=email or f"user-{uuid.uuid4().hex[:10]}@example.com",
                name=name,
                password_hash=hashed,
                address={"line1": "1 Main St", "city": "Springfield", "postalCode": "12345", "country": "US"},
                role=role,
            )
            db.session.add(user)
            db.session.commit()
            db.session.refresh(user)
            db.session.expunge(user)
            return user

    return _make


@pytest.fixture
def token_for(app: Flask) -> Any:
    from app.api.security import issue_token

    def _token(user: Any) -> dict[str, str]:
        with app.test_request_context():
            token, _ = issue_token(user)
        return {"Authorization": f"Bearer {token}"}

    return _token


@pytest.fixture
def customer(make_user: Any) -> Any:
    return make_user("customer")


@pytest.fixture
def admin(make_user: Any) -> Any:
    return make_user("admin")
