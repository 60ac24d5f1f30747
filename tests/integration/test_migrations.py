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


def test_the_email_key_migration_keeps_existing_accounts_reachable(empty_database: str, redis_url: str):
    """0002 backfills email_key with the one folding rule, so accounts made before it log in as typed
    (SPEC §5.10), and rows the previous release writes during a rolling deploy get a key too."""
    from app.adapters.passwords import hash_password
    from app.extensions import db
    from app.services.users import authenticate

    app = make_app(empty_database, redis_url)
    password_hash = hash_password("correct horse battery")
    with app.app_context():
        upgrade(revision="0001")
        with psycopg.connect(empty_database) as conn:
            for email in (
                "İnci@example.com",
                "Mixed.Case@Example.com",
                "STRASSE@example.com",
                "straße@example.com",
            ):
                conn.execute(
                    "INSERT INTO users (id, email, name, password_hash, role, token_version, created_at, "
                    "updated_at) VALUES (gen_random_uuid(), %s, 'Old', %s, 'customer', 1, now(), now())",
                    (email, password_hash),
                )
                conn.commit()  # one by one: created_at orders them
        upgrade()
        assert authenticate("İnci@example.com", "correct horse battery").email == "İnci@example.com"
        assert (
            authenticate("mixed.case@example.com", "correct horse battery").email == "Mixed.Case@Example.com"
        )
        # Two addresses that fold alike predate the rule: the older keeps the folded key, both log in.
        assert authenticate("strasse@example.com", "correct horse battery").email == "STRASSE@example.com"
        with psycopg.connect(empty_database) as conn:
            keys = dict(conn.execute("SELECT email, email_key FROM users").fetchall())
            # What the previous release would write (no email_key): the trigger fills it in.
            conn.execute(
                "INSERT INTO users (id, email, name, role, token_version, created_at, updated_at) "
                "VALUES (gen_random_uuid(), 'Old.Release@Example.com', 'N-1', 'customer', 1, now(), now())"
            )
            filled = conn.execute(
                "SELECT email_key FROM users WHERE email = 'Old.Release@Example.com'"
            ).fetchone()
            conn.commit()
        assert keys["İnci@example.com"] == "i̇nci@example.com"
        assert keys["straße@example.com"] == "straße@example.com"
        assert filled == ("old.release@example.com",)
        db.engine.dispose()
