import pytest

from app.config import ConfigError, Settings, normalise_database_url


def test_heroku_postgres_scheme_is_accepted():
    assert normalise_database_url("postgres://u:p@h:5432/d") == "postgresql+psycopg://u:p@h:5432/d"
    assert normalise_database_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"


def test_defaults_follow_the_spec():
    s = Settings.from_env({})
    assert (s.PAYMENT_MAX_ATTEMPTS, s.PAYMENT_BACKOFF_SECONDS, s.PAYMENT_PENDING_TIMEOUT_SECONDS) == (
        8,
        2.0,
        900,
    )
    assert (s.NOTIFY_MAX_ATTEMPTS, s.NOTIFY_BACKOFF_SECONDS, s.NOTIFY_RETRY_INTERVAL_SECONDS) == (
        5,
        10.0,
        600,
    )
    assert (s.RECONCILE_INTERVAL_SECONDS, s.OUTBOX_INTERVAL_SECONDS) == (300, 5.0)
    assert s.AUTH_RATE_LIMIT == "10/minute"
    assert s.PAYMENT_DEFAULT_TOKEN == "pm_card_visa"
    assert s.STRIPE_API_BASE == "http://127.0.0.1:12111"
    assert (s.FEATURE_CACHE_SECONDS, s.JWT_EXPIRES_SECONDS, s.CURRENCY, s.LOG_LEVEL) == (
        5.0,
        3600,
        "USD",
        "INFO",
    )
    assert s.DATABASE_URL == "embedded" and s.REDIS_URL == "embedded"


def test_production_requires_a_secret_key():
    with pytest.raises(ConfigError):
        Settings.from_env({"APP_ENV": "production"})


def test_production_has_no_default_payment_token():
    s = Settings.from_env({"APP_ENV": "production", "SECRET_KEY": "x" * 40})
    assert s.PAYMENT_DEFAULT_TOKEN == ""
    assert s.is_production


def test_bad_integers_are_reported_by_name():
    with pytest.raises(ConfigError, match="PAYMENT_MAX_ATTEMPTS"):
        Settings.from_env({"PAYMENT_MAX_ATTEMPTS": "many"})


def test_overrides_win_over_the_environment():
    s = Settings.from_env({"CURRENCY": "usd"}, overrides={"CURRENCY": "eur", "NOT_A_SETTING": 1})
    assert s.CURRENCY == "EUR"
