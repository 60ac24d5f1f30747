"""Every setting of the application, read from the environment here and nowhere else."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

EMBEDDED = "embedded"
ROOT = Path(__file__).resolve().parent.parent
# Where development keeps the signing key it generated (so restarts keep tokens valid).
DEV_SECRET_KEY_FILE = ROOT / "instance" / "secret_key"
MIN_SECRET_KEY_LENGTH = 32
# Keys that were published as defaults or examples (by this repository or by common templates):
# anyone can sign tokens with them, so they are refused in every environment.
KNOWN_EXAMPLE_KEYS = frozenset(
    {
        "dev-insecure-secret-key-change-me-0123456789",
        "compose-local-secret-key-change-me-0123456789",
        "bench-secret-key-0123456789abcdef0123456789",
        "a-production-secret-that-is-long-enough-0123456789",
        "your-secret-key",
        "secret",
        "changeme",
        "change-me",
        "super-secret",
        "supersecretkey",
    }
)


class ConfigError(RuntimeError):
    """The environment describes a configuration that cannot run."""


def normalise_database_url(url: str) -> str:
    """Accept Heroku's ``postgres://`` form and pin SQLAlchemy to the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc


def _checked_secret_key(secret: str) -> str:
    """An explicit SECRET_KEY: long enough and not one the world already knows."""
    folded = secret.strip().lower()
    if folded in KNOWN_EXAMPLE_KEYS or "change-me" in folded or "changeme" in folded:
        raise ConfigError("SECRET_KEY is a published example key: generate one (openssl rand -hex 32)")
    if len(secret) < MIN_SECRET_KEY_LENGTH:
        raise ConfigError(f"SECRET_KEY must be at least {MIN_SECRET_KEY_LENGTH} characters")
    return secret


def development_secret_key(path: Path | None = None) -> str:
    """The key development generated once under ``instance/``, created on first use.

    Several processes may start at once (gunicorn workers, celery, beat): the key is written to a
    private temporary file and hard-linked into place, so exactly one candidate wins and every
    process reads the same key.
    """
    path = path or DEV_SECRET_KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_hex(32).encode())
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race: use its key
        finally:
            tmp.unlink()
    return path.read_text().strip()


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


@dataclass(frozen=True)
class Settings:
    """The typed settings; ``Settings.from_env()`` is the only reader of ``os.environ``."""

    APP_ENV: str = "development"
    DATABASE_URL: str = EMBEDDED
    REDIS_URL: str = EMBEDDED
    # No default: production requires one; development generates its own (instance/secret_key).
    SECRET_KEY: str = ""
    PORT: int = 5000
    WEB_CONCURRENCY: int = 2
    WORKER_CONCURRENCY: int = 2
    SMTP_URL: str = "smtp://127.0.0.1:8025"
    MAIL_FROM: str = "OMS <no-reply@oms.local>"
    STRIPE_API_KEY: str = "sk_test_sandbox"
    STRIPE_API_BASE: str = "http://127.0.0.1:12111"
    # Verifies POST /webhooks/stripe (`stripe listen` prints one; the dashboard shows the endpoint's).
    STRIPE_WEBHOOK_SECRET: str = "whsec_sandbox"  # noqa: S105 (the sandbox's public test secret)
    PAYMENT_MAX_ATTEMPTS: int = 8
    PAYMENT_BACKOFF_SECONDS: float = 2.0
    PAYMENT_PENDING_TIMEOUT_SECONDS: int = 900
    # A PENDING payment idle this long had its charge task lost (e.g. a killed worker): queue it again.
    PAYMENT_SWEEP_SECONDS: int = 120
    # A declined order waits this long for another payment attempt (0: a decline cancels at once).
    PAYMENT_RETRY_WINDOW_SECONDS: int = 900
    NOTIFY_MAX_ATTEMPTS: int = 5
    NOTIFY_BACKOFF_SECONDS: float = 10.0
    NOTIFY_RETRY_INTERVAL_SECONDS: int = 600
    RECONCILE_INTERVAL_SECONDS: int = 300
    OUTBOX_INTERVAL_SECONDS: float = 5.0
    AUTH_RATE_LIMIT: str = "10/minute"
    # Failed logins per account (the case-folded e-mail), whatever the client address.
    AUTH_ACCOUNT_RATE_LIMIT: str = "20/hour"
    # Sign-ups per client address: each costs an argon2 hash (CPU on purpose).
    SIGNUP_RATE_LIMIT: str = "10/hour"
    # Password hashes (argon2) running at once in one process; the next wait (up to
    # PASSWORD_HASH_WAIT_SECONDS, then 503) so a sign-up or login flood cannot starve other requests.
    PASSWORD_HASH_CONCURRENCY: int = 1
    PASSWORD_HASH_WAIT_SECONDS: float = 10.0
    # How long an e-mailed password-reset token stays usable (it is single-use either way).
    PASSWORD_RESET_TTL_SECONDS: int = 3600
    # When set, GET /metrics requires `Authorization: Bearer <METRICS_TOKEN>` (required in production).
    METRICS_TOKEN: str = ""
    # Checkouts per user (JWT subject): a cap on the sensitive business flow (OWASP API6).
    CHECKOUT_RATE_LIMIT: str = "30/minute"
    PAYMENT_DEFAULT_TOKEN: str = "pm_card_visa"  # noqa: S105 (a test card id)
    # The payment sandbox signs the events it sends with this (dev and tests only, SPEC §5.3).
    SANDBOX_WEBHOOK_SECRET: str = "whsec_sandbox"  # noqa: S105 (the sandbox's published test secret)
    FEATURE_CACHE_SECONDS: float = 5.0
    JWT_EXPIRES_SECONDS: int = 3600
    CURRENCY: str = "USD"
    LOG_LEVEL: str = "INFO"
    # Not in the spec's table, but operators need them: how long a request may wait on the
    # database and where gunicorn's multiprocess metrics live.
    DB_CONNECT_TIMEOUT_SECONDS: int = 3
    DB_STATEMENT_TIMEOUT_MS: int = 15000
    DB_LOCK_TIMEOUT_MS: int = 5000
    # False behind PgBouncer in transaction mode (< 1.21): psycopg then never prepares statements
    # server-side, since the next transaction may run on another server connection (docs/scaling.md).
    DB_PREPARED_STATEMENTS: bool = True
    PROMETHEUS_MULTIPROC_DIR: str = ""
    # The worker's own /metrics port (task counts, durations, retries; 0: not served), and how often
    # beat refreshes the payments/notifications-by-status counts /metrics shows.
    WORKER_METRICS_PORT: int = 0
    STATUS_COUNTS_REFRESH_SECONDS: float = 30.0
    # The SMTP client: socket timeout, and its circuit breaker (shared by all workers through Redis).
    SMTP_TIMEOUT_SECONDS: float = 10.0
    SMTP_BREAKER_FAIL_MAX: int = 5
    SMTP_BREAKER_RESET_SECONDS: float = 60.0
    # The payment gateway client: per-request timeout, and its circuit breaker (shared through Redis).
    PAYMENT_GATEWAY_TIMEOUT_SECONDS: float = 10.0
    PAYMENT_BREAKER_FAIL_MAX: int = 5
    PAYMENT_BREAKER_RESET_SECONDS: float = 30.0
    # How many proxies in front of the web process set X-Forwarded-For/-Proto (Heroku's router: 1).
    # Rate limits key on the client address, so this must match the deployment.
    TRUSTED_PROXY_COUNT: int = 0

    @property
    def is_production(self) -> bool:
        return self.APP_ENV == "production"

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
    ) -> Settings:
        """Read the environment (``os.environ`` unless given), with ``overrides`` on top."""
        env = dict(os.environ if env is None else env)
        for key, value in (overrides or {}).items():
            if key in {f.name for f in fields(cls)} and value is not None:
                env[key] = str(value)
        app_env = env.get("APP_ENV", "development") or "development"
        production = app_env == "production"
        secret = env.get("SECRET_KEY", "")
        if secret:
            secret = _checked_secret_key(secret)
        elif production:
            raise ConfigError(
                f"SECRET_KEY (at least {MIN_SECRET_KEY_LENGTH} characters) is required "
                "when APP_ENV=production"
            )
        else:
            secret = development_secret_key()
        metrics_token = env.get("METRICS_TOKEN", "")
        if production and not metrics_token:
            raise ConfigError("METRICS_TOKEN is required when APP_ENV=production (it guards GET /metrics)")
        webhook_secret = env.get("STRIPE_WEBHOOK_SECRET") or ""
        if production and not webhook_secret:
            raise ConfigError(
                "STRIPE_WEBHOOK_SECRET is required when APP_ENV=production "
                "(it verifies POST /webhooks/stripe)"
            )
        default_token = "" if production else "pm_card_visa"
        return cls(
            APP_ENV=app_env,
            DATABASE_URL=env.get("DATABASE_URL") or EMBEDDED,
            REDIS_URL=env.get("REDIS_URL") or EMBEDDED,
            SECRET_KEY=secret,
            PORT=_int(env, "PORT", cls.PORT, 1),
            WEB_CONCURRENCY=_int(env, "WEB_CONCURRENCY", cls.WEB_CONCURRENCY, 1),
            WORKER_CONCURRENCY=_int(env, "WORKER_CONCURRENCY", cls.WORKER_CONCURRENCY, 1),
            SMTP_URL=env.get("SMTP_URL") or cls.SMTP_URL,
            MAIL_FROM=env.get("MAIL_FROM") or cls.MAIL_FROM,
            STRIPE_API_KEY=env.get("STRIPE_API_KEY") or cls.STRIPE_API_KEY,
            STRIPE_API_BASE=(env.get("STRIPE_API_BASE") or cls.STRIPE_API_BASE).rstrip("/"),
            STRIPE_WEBHOOK_SECRET=webhook_secret or cls.STRIPE_WEBHOOK_SECRET,
            PAYMENT_MAX_ATTEMPTS=_int(env, "PAYMENT_MAX_ATTEMPTS", cls.PAYMENT_MAX_ATTEMPTS, 1),
            PAYMENT_BACKOFF_SECONDS=_float(env, "PAYMENT_BACKOFF_SECONDS", cls.PAYMENT_BACKOFF_SECONDS),
            PAYMENT_PENDING_TIMEOUT_SECONDS=_int(
                env, "PAYMENT_PENDING_TIMEOUT_SECONDS", cls.PAYMENT_PENDING_TIMEOUT_SECONDS, 1
            ),
            PAYMENT_SWEEP_SECONDS=_int(env, "PAYMENT_SWEEP_SECONDS", cls.PAYMENT_SWEEP_SECONDS, 10),
            PAYMENT_RETRY_WINDOW_SECONDS=_int(
                env, "PAYMENT_RETRY_WINDOW_SECONDS", cls.PAYMENT_RETRY_WINDOW_SECONDS, 0
            ),
            NOTIFY_MAX_ATTEMPTS=_int(env, "NOTIFY_MAX_ATTEMPTS", cls.NOTIFY_MAX_ATTEMPTS, 1),
            NOTIFY_BACKOFF_SECONDS=_float(env, "NOTIFY_BACKOFF_SECONDS", cls.NOTIFY_BACKOFF_SECONDS),
            NOTIFY_RETRY_INTERVAL_SECONDS=_int(
                env, "NOTIFY_RETRY_INTERVAL_SECONDS", cls.NOTIFY_RETRY_INTERVAL_SECONDS, 1
            ),
            RECONCILE_INTERVAL_SECONDS=_int(
                env, "RECONCILE_INTERVAL_SECONDS", cls.RECONCILE_INTERVAL_SECONDS, 1
            ),
            OUTBOX_INTERVAL_SECONDS=_float(env, "OUTBOX_INTERVAL_SECONDS", cls.OUTBOX_INTERVAL_SECONDS),
            AUTH_RATE_LIMIT=env.get("AUTH_RATE_LIMIT") or cls.AUTH_RATE_LIMIT,
            AUTH_ACCOUNT_RATE_LIMIT=env.get("AUTH_ACCOUNT_RATE_LIMIT") or cls.AUTH_ACCOUNT_RATE_LIMIT,
            SIGNUP_RATE_LIMIT=env.get("SIGNUP_RATE_LIMIT") or cls.SIGNUP_RATE_LIMIT,
            PASSWORD_HASH_CONCURRENCY=_int(
                env, "PASSWORD_HASH_CONCURRENCY", cls.PASSWORD_HASH_CONCURRENCY, 1
            ),
            PASSWORD_HASH_WAIT_SECONDS=_float(
                env, "PASSWORD_HASH_WAIT_SECONDS", cls.PASSWORD_HASH_WAIT_SECONDS
            ),
            METRICS_TOKEN=metrics_token,
            CHECKOUT_RATE_LIMIT=env.get("CHECKOUT_RATE_LIMIT") or cls.CHECKOUT_RATE_LIMIT,
            PAYMENT_DEFAULT_TOKEN=env.get("PAYMENT_DEFAULT_TOKEN", default_token),
            SANDBOX_WEBHOOK_SECRET=env.get("SANDBOX_WEBHOOK_SECRET") or cls.SANDBOX_WEBHOOK_SECRET,
            FEATURE_CACHE_SECONDS=_float(env, "FEATURE_CACHE_SECONDS", cls.FEATURE_CACHE_SECONDS),
            JWT_EXPIRES_SECONDS=_int(env, "JWT_EXPIRES_SECONDS", cls.JWT_EXPIRES_SECONDS, 1),
            CURRENCY=(env.get("CURRENCY") or cls.CURRENCY).upper(),
            LOG_LEVEL=(env.get("LOG_LEVEL") or cls.LOG_LEVEL).upper(),
            DB_CONNECT_TIMEOUT_SECONDS=_int(
                env, "DB_CONNECT_TIMEOUT_SECONDS", cls.DB_CONNECT_TIMEOUT_SECONDS, 1
            ),
            DB_STATEMENT_TIMEOUT_MS=_int(env, "DB_STATEMENT_TIMEOUT_MS", cls.DB_STATEMENT_TIMEOUT_MS, 0),
            DB_LOCK_TIMEOUT_MS=_int(env, "DB_LOCK_TIMEOUT_MS", cls.DB_LOCK_TIMEOUT_MS, 0),
            DB_PREPARED_STATEMENTS=_bool(env, "DB_PREPARED_STATEMENTS", cls.DB_PREPARED_STATEMENTS),
            PROMETHEUS_MULTIPROC_DIR=env.get("PROMETHEUS_MULTIPROC_DIR", cls.PROMETHEUS_MULTIPROC_DIR),
            WORKER_METRICS_PORT=_int(env, "WORKER_METRICS_PORT", cls.WORKER_METRICS_PORT, 0),
            STATUS_COUNTS_REFRESH_SECONDS=_float(
                env, "STATUS_COUNTS_REFRESH_SECONDS", cls.STATUS_COUNTS_REFRESH_SECONDS
            ),
            SMTP_TIMEOUT_SECONDS=_float(env, "SMTP_TIMEOUT_SECONDS", cls.SMTP_TIMEOUT_SECONDS),
            TRUSTED_PROXY_COUNT=_int(env, "TRUSTED_PROXY_COUNT", cls.TRUSTED_PROXY_COUNT, 0),
            SMTP_BREAKER_FAIL_MAX=_int(env, "SMTP_BREAKER_FAIL_MAX", cls.SMTP_BREAKER_FAIL_MAX, 1),
            SMTP_BREAKER_RESET_SECONDS=_float(
                env, "SMTP_BREAKER_RESET_SECONDS", cls.SMTP_BREAKER_RESET_SECONDS
            ),
            PAYMENT_GATEWAY_TIMEOUT_SECONDS=_float(
                env, "PAYMENT_GATEWAY_TIMEOUT_SECONDS", cls.PAYMENT_GATEWAY_TIMEOUT_SECONDS
            ),
            PAYMENT_BREAKER_FAIL_MAX=_int(env, "PAYMENT_BREAKER_FAIL_MAX", cls.PAYMENT_BREAKER_FAIL_MAX, 1),
            PAYMENT_BREAKER_RESET_SECONDS=_float(
                env, "PAYMENT_BREAKER_RESET_SECONDS", cls.PAYMENT_BREAKER_RESET_SECONDS
            ),
        )

    def as_flask_config(self) -> dict[str, Any]:
        """The Flask config mapping: our settings plus what the extensions read."""
        from app.adapters.redis_budget import BudgetedConnection

        cfg: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("DATABASE_URL", "REDIS_URL"):
            if getattr(self, name) == EMBEDDED:
                raise ConfigError(
                    f"{name} is not set: start through `make run` / `make test` (which boot embedded "
                    "Postgres and Redis) or point it at a server"
                )
        db_url = normalise_database_url(self.DATABASE_URL)
        cfg.update(
            DEBUG=False,
            TESTING=False,
            PROPAGATE_EXCEPTIONS=False,
            MAX_CONTENT_LENGTH=1024 * 1024,
            SQLALCHEMY_DATABASE_URI=db_url,
            SQLALCHEMY_ENGINE_OPTIONS={
                # No pre-ping: it cost a round trip per transaction (a read did 2 instead of 1).
                # A connection that died meanwhile fails its request with a 503, and SQLAlchemy
                # then discards every pooled connection as old as it; recycling bounds the age.
                "pool_pre_ping": False,
                "pool_recycle": 600,
                "pool_size": 5,
                "max_overflow": 5,
                "pool_timeout": 3,
                "connect_args": {
                    "connect_timeout": self.DB_CONNECT_TIMEOUT_SECONDS,
                    "options": (
                        f"-c statement_timeout={self.DB_STATEMENT_TIMEOUT_MS} "
                        f"-c lock_timeout={self.DB_LOCK_TIMEOUT_MS} "
                        "-c idle_in_transaction_session_timeout=60000"
                    ),
                },
            },
            SQLALCHEMY_TRACK_MODIFICATIONS=False,
            # flask-smorest / OpenAPI
            API_TITLE="Order Management API",
            API_VERSION="1.0.0",
            OPENAPI_VERSION="3.0.3",
            OPENAPI_URL_PREFIX="/",
            OPENAPI_JSON_PATH="openapi.json",
            OPENAPI_SWAGGER_UI_PATH="/docs",
            # Served by the app from the swagger-ui-bundle package (app/api/docs.py): no CDN, and no
            # call to swagger.io's online validator.
            OPENAPI_SWAGGER_UI_URL="/docs/assets/",
            OPENAPI_SWAGGER_UI_CONFIG={"validatorUrl": None},
            # flask-jwt-extended
            JWT_SECRET_KEY=self.SECRET_KEY,
            JWT_ALGORITHM="HS256",
            JWT_DECODE_ALGORITHMS=["HS256"],
            JWT_ACCESS_TOKEN_EXPIRES=self.JWT_EXPIRES_SECONDS,
            JWT_TOKEN_LOCATION=["headers"],
            JWT_ERROR_MESSAGE_KEY="detail",
            # Flask-Limiter
            RATELIMIT_STORAGE_URI=self.REDIS_URL,
            # BudgetedConnection: the limiter's Redis reads share the request's one-second Redis budget.
            RATELIMIT_STORAGE_OPTIONS={
                "socket_connect_timeout": 1,
                "socket_timeout": 1,
                "connection_class": BudgetedConnection,
            },
            RATELIMIT_HEADERS_ENABLED=True,
            RATELIMIT_SWALLOW_ERRORS=True,
            RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=True,
            RATELIMIT_KEY_PREFIX="oms-limits",
        )
        if not self.DB_PREPARED_STATEMENTS:
            cfg["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"]["prepare_threshold"] = None
        return cfg
