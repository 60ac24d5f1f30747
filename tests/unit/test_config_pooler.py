"""Behind PgBouncer in transaction mode the app must not prepare statements server-side."""

import pytest

from app.config import ConfigError, Settings

URLS = {"DATABASE_URL": "postgresql://u@db/oms", "REDIS_URL": "redis://r:6379/0"}


def connect_args(**env: str) -> dict:
    return Settings.from_env({**URLS, **env}).as_flask_config()["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"]


def test_prepared_statements_are_psycopgs_default():
    assert "prepare_threshold" not in connect_args()


@pytest.mark.parametrize("value", ["false", "0", "no", "off", "FALSE"])
def test_db_prepared_statements_false_turns_them_off(value: str):
    assert connect_args(DB_PREPARED_STATEMENTS=value)["prepare_threshold"] is None


def test_a_bad_boolean_is_reported_by_name():
    with pytest.raises(ConfigError, match="DB_PREPARED_STATEMENTS"):
        Settings.from_env({**URLS, "DB_PREPARED_STATEMENTS": "maybe"})
