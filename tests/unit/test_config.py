import threading
from pathlib import Path

import pytest

import app.config as config_module
from app.config import ConfigError, Settings, development_secret_key, normalise_database_url

PROD = {
    "APP_ENV": "production",
    "SECRET_KEY": "k" * 40,
    "METRICS_TOKEN": "m" * 20,
    "STRIPE_WEBHOOK_SECRET": "whsec_" + "w" * 24,
}


@pytest.fixture(autouse=True)
def _key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Development's generated key goes to a temporary instance/ here, not the checkout's."""
    path = tmp_path / "instance" / "secret_key"
    monkeypatch.setattr(config_module, "DEV_SECRET_KEY_FILE", path)
    return path


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
    s = Settings.from_env(PROD)
    assert s.PAYMENT_DEFAULT_TOKEN == ""
    assert s.is_production


def test_bad_integers_are_reported_by_name():
    with pytest.raises(ConfigError, match="PAYMENT_MAX_ATTEMPTS"):
        Settings.from_env({"PAYMENT_MAX_ATTEMPTS": "many"})


def test_overrides_win_over_the_environment():
    s = Settings.from_env({"CURRENCY": "usd"}, overrides={"CURRENCY": "eur", "NOT_A_SETTING": 1})
    assert s.CURRENCY == "EUR"


# ---- SPEC §5.10: no signing key ships in the repository ------------------------------------------


def test_no_signing_key_is_written_in_the_settings():
    assert Settings.SECRET_KEY == ""


def test_development_generates_a_random_key_once_and_keeps_it(_key_file: Path):
    first = Settings.from_env({}).SECRET_KEY
    assert len(first) == 64 and int(first, 16) >= 0
    assert _key_file.read_text() == first
    assert _key_file.stat().st_mode & 0o777 == 0o600
    assert first == Settings.from_env({}).SECRET_KEY  # a restart keeps tokens valid


def test_another_checkout_generates_another_key(tmp_path: Path):
    assert development_secret_key(tmp_path / "a") != development_secret_key(tmp_path / "b")


def test_processes_starting_together_agree_on_one_key(_key_file: Path):
    keys: list[str] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        keys.append(development_secret_key())

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys)) == 1 and keys[0] == _key_file.read_text()


def test_production_refuses_to_start_without_a_key():
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        Settings.from_env({**PROD, "SECRET_KEY": ""})


@pytest.mark.parametrize(
    "key",
    [
        "dev-insecure-secret-key-change-me-0123456789",  # the default this repository shipped
        "compose-local-secret-key-change-me-0123456789",  # docker-compose.yml's old default
        "my-app-secret-CHANGE-ME-please-0123456789012",
    ],
)
@pytest.mark.parametrize("env", ["development", "production"])
def test_known_example_keys_are_refused_everywhere(key: str, env: str):
    with pytest.raises(ConfigError, match="example"):
        Settings.from_env({**PROD, "APP_ENV": env, "SECRET_KEY": key})


def test_a_short_key_is_refused():
    with pytest.raises(ConfigError, match="at least 32"):
        Settings.from_env({"SECRET_KEY": "short"})


def test_production_refuses_to_start_without_a_metrics_token():
    with pytest.raises(ConfigError, match="METRICS_TOKEN"):
        Settings.from_env({**PROD, "METRICS_TOKEN": ""})


def test_production_refuses_to_start_without_a_webhook_secret():
    with pytest.raises(ConfigError, match="STRIPE_WEBHOOK_SECRET"):
        Settings.from_env({**PROD, "STRIPE_WEBHOOK_SECRET": ""})
    assert Settings.from_env(PROD).STRIPE_WEBHOOK_SECRET == "whsec_" + "w" * 24
    # Elsewhere the sandbox's secret is the default.
    assert Settings.from_env({"SECRET_KEY": "k" * 40}).STRIPE_WEBHOOK_SECRET == "whsec_sandbox"


def test_the_payment_retry_window_defaults_to_15_minutes_and_may_be_0():
    assert Settings.from_env({"SECRET_KEY": "k" * 40}).PAYMENT_RETRY_WINDOW_SECONDS == 900
    assert (
        Settings.from_env(
            {"SECRET_KEY": "k" * 40, "PAYMENT_RETRY_WINDOW_SECONDS": "0"}
        ).PAYMENT_RETRY_WINDOW_SECONDS
        == 0
    )
    with pytest.raises(ConfigError):
        Settings.from_env({"SECRET_KEY": "k" * 40, "PAYMENT_RETRY_WINDOW_SECONDS": "-1"})


def test_new_security_settings_have_the_spec_defaults():
    s = Settings.from_env({})
    assert (s.SIGNUP_RATE_LIMIT, s.AUTH_ACCOUNT_RATE_LIMIT, s.METRICS_TOKEN) == ("10/hour", "20/hour", "")
    assert s.PASSWORD_HASH_CONCURRENCY == 1
