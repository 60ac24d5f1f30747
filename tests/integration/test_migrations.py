"""The schema exists only through migrations, and they run both ways."""

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from tests.conftest import create_database, make_app


def table_names(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {r[0] for r in rows}


@pytest.fixture
def empty_database(database_url: str, worker_id: str) -> str:
    return create_database(database_url, f"oms_migrations_{worker_id}")


def test_upgrade_downgrade_upgrade_on_an_empty_database(empty_database: str, redis_url: str):
    app = make_app(empty_database, redis_url)
    with app.app_context():
        upgrade()
        assert {"orders", "products", "stock_movements", "outbox", "users"} <= table_names(empty_database)
        downgrade(revision="base")
        assert table_names(empty_database) <= {"alembic_version"}
        upgrade()
        assert "orders" in table_names(empty_database)
        from app.extensions import db

        db.engine.dispose()


def test_models_and_migrations_agree(app):
    from app.extensions import db

    with app.app_context(), db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, db.metadata) == []


def test_checkout_feature_is_seeded_by_the_migration(app):
    from app.domain.operations import Feature
    from app.extensions import db

    with app.app_context():
        assert db.session.get(Feature, "checkout").enabled is True
