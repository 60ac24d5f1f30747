"""The migration linter renders each Alembic revision to SQL offline and squawk flags locking hazards.

Each hazardous example is the NEXT migration someone might write on top of the real head, on a
table that already exists and is busy in production (`orders`).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
USER_ID = "00000000-0000-0000-0000-0000000000a1"


def current_head() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(ROOT / "migrations"))
    return str(ScriptDirectory.from_config(config).get_current_head())


def with_next_migrations(tmp_path: Path, *migrations: tuple[str, str]) -> Path:
    """A copy of migrations/ with more revisions on top of the head: (header, upgrade body) each."""
    directory = tmp_path / "migrations"
    shutil.copytree(ROOT / "migrations", directory, ignore=shutil.ignore_patterns("__pycache__"))
    down = current_head()
    for number, (header, upgrade_body) in enumerate(migrations, start=9001):
        body = textwrap.indent(textwrap.dedent(upgrade_body).strip(), "    ")
        (directory / "versions" / f"{number}_next.py").write_text(
            f'"""next migration {number}"""\n'
            "from alembic import op\n"
            "import sqlalchemy as sa\n\n"
            f"revision = '{number}'\n"
            f"down_revision = '{down}'\n"
            "branch_labels = None\n"
            "depends_on = None\n"
            f"{textwrap.dedent(header).strip()}\n\n\n"
            f"def upgrade():\n{body}\n\n\n"
            "def downgrade():\n    pass\n"
        )
        down = str(number)
    return directory


def lint(directory: Path | None = None) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "app.devtools.lint_migrations"]
    if directory is not None:
        args += ["--directory", str(directory)]
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def test_the_project_migrations_have_no_locking_hazards():
    result = lint()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no locking hazards" in result.stdout


@pytest.mark.parametrize(
    ("upgrade_body", "rule"),
    [
        pytest.param(
            "op.create_index('ix_orders_cancel_reason', 'orders', ['cancel_reason'])",
            "require-concurrent-index-creation",
            id="index-without-concurrently-blocks-writes",
        ),
        pytest.param(
            "op.alter_column('orders', 'cancel_reason', existing_type=sa.String(64), nullable=False)",
            "adding-not-nullable-field",
            id="set-not-null-scans-under-access-exclusive",
        ),
        pytest.param(
            "op.add_column('orders', sa.Column('channel', sa.Text(), nullable=False))",
            "adding-required-field",
            id="not-null-column-without-default-breaks-the-old-release",
        ),
        pytest.param(
            "op.create_check_constraint('ck_orders_total_positive', 'orders', 'total_amount > 0')",
            "constraint-missing-not-valid",
            id="check-constraint-validated-under-lock",
        ),
        pytest.param(
            "op.drop_column('orders', 'cancel_reason')",
            "ban-drop-column",
            id="drop-column-breaks-the-old-release",
        ),
    ],
)
def test_the_linter_reports_a_hazardous_next_migration(tmp_path: Path, upgrade_body: str, rule: str):
    result = lint(with_next_migrations(tmp_path, ("", upgrade_body)))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "9001:" in result.stdout
    assert rule in result.stdout


# docs/deploy.md's worked example: release N expands, release N+1 enforces (one revision each step).
RELEASE_N = [
    (
        "",
        """
        op.add_column('orders', sa.Column('channel', sa.Text(), nullable=True))
        op.add_column('orders', sa.Column('priority', sa.Integer(), nullable=False, server_default='0'))
        """,
    ),
]
RELEASE_N_PLUS_1 = [
    (
        "",
        """
        op.execute(
            "ALTER TABLE orders ADD CONSTRAINT ck_orders_channel_not_null "
            "CHECK (channel IS NOT NULL) NOT VALID"
        )
        """,
    ),
    ("", "op.execute('ALTER TABLE orders VALIDATE CONSTRAINT ck_orders_channel_not_null')"),
    (
        """
        # The validated CHECK (channel IS NOT NULL) lets PostgreSQL >= 12 set NOT NULL without a
        # scan, and it is redundant afterwards.
        squawk_exclude = ["adding-not-nullable-field", "ban-drop-constraint"]
        """,
        """
        op.alter_column('orders', 'channel', existing_type=sa.Text(), nullable=False)
        op.drop_constraint(op.f('ck_orders_channel_not_null'), 'orders', type_='check')
        """,
    ),
    (
        "",
        """
        with op.get_context().autocommit_block():
            op.execute("SET statement_timeout = 0")
            op.create_index(
                'ix_orders_channel', 'orders', ['channel'],
                postgresql_concurrently=True, if_not_exists=True,
            )
        """,
    ),
]


def test_the_expand_sequence_of_docs_deploy_md_passes(tmp_path: Path):
    result = lint(with_next_migrations(tmp_path, *RELEASE_N, *RELEASE_N_PLUS_1))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_expand_sequence_applies_to_a_table_with_rows(
    tmp_path: Path, database_url: str, worker_id: str, redis_url: str
):
    """Online, one transaction per revision: NOT VALID and VALIDATE commit apart; CONCURRENTLY runs."""
    from flask_migrate import upgrade

    from tests.conftest import create_database, make_app

    url = create_database(database_url, f"oms_expand_{worker_id}")
    directory = str(with_next_migrations(tmp_path, *RELEASE_N, *RELEASE_N_PLUS_1))
    app = make_app(url, redis_url)
    with app.app_context():
        upgrade(directory=directory, revision=current_head())
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO users (id, name, created_at, updated_at) VALUES (%s, 'U', now(), now())",
                (USER_ID,),
            )
            conn.execute(
                "INSERT INTO orders (id, user_id, status, order_date, total_amount, currency, updated_at) "
                "VALUES (gen_random_uuid(), %s, 'PLACED', now(), 10, 'USD', now())",
                (USER_ID,),
            )
        upgrade(directory=directory, revision="9001")  # release N
        with psycopg.connect(url, autocommit=True) as conn:  # the backfill, between releases
            conn.execute("UPDATE orders SET channel = 'WEB' WHERE channel IS NULL")
        upgrade(directory=directory)  # release N+1: four revisions, four transactions
        from app.extensions import db

        db.engine.dispose()

    with psycopg.connect(url, autocommit=True) as conn:
        nullable = conn.execute(
            "SELECT is_nullable FROM information_schema.columns "
            "WHERE table_name = 'orders' AND column_name = 'channel'"
        ).fetchone()
        index_valid = conn.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_orders_channel'::regclass"
        ).fetchone()
        version = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert nullable == ("NO",)
    assert index_valid == (True,)
    assert version == (str(9000 + len(RELEASE_N) + len(RELEASE_N_PLUS_1)),)


def test_validating_in_the_transaction_that_added_the_constraint_is_reported(tmp_path: Path):
    directory = with_next_migrations(
        tmp_path,
        (
            "",
            """
            op.execute("ALTER TABLE orders ADD CONSTRAINT ck_orders_v CHECK (version > 0) NOT VALID")
            op.execute("ALTER TABLE orders VALIDATE CONSTRAINT ck_orders_v")
            """,
        ),
    )
    result = lint(directory)
    assert result.returncode == 1
    assert "constraint-missing-not-valid" in result.stdout


def test_a_migration_may_exclude_a_rule_for_itself_only(tmp_path: Path):
    directory = with_next_migrations(
        tmp_path,
        (
            """
            # Contract step: no supported release reads orders.cancel_reason any more.
            squawk_exclude = ['ban-drop-column']
            """,
            "op.drop_column('orders', 'cancel_reason')",
        ),
        ("", "op.drop_column('orders', 'deleted_at')"),
    )
    result = lint(directory)
    assert result.returncode == 1
    assert "9001:" not in result.stdout
    assert "9002:" in result.stdout
    assert "ban-drop-column" in result.stdout
