"""users.email_key: one Unicode case-folding rule for e-mail addresses

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 03:50:00

Logins compared Python's ``email.lower()`` with Postgres' ``lower(email)``; the two disagree on some
letters (``İ``), so ``İnci@example.com`` could not log in as typed. Now both sides compare
``email_key`` = the address case-folded by Python (``app.domain.users.email_key``).

Expand only (docs/deploy.md): the column is nullable and ``uq_users_email_lower`` stays for the
previous release, which knows nothing of ``email_key``. A trigger fills the key for rows that release
writes during a rolling deploy (with ``lower()``, exact for the ASCII addresses it can create;
the contract release re-folds them and drops the old index).
"""

import sqlalchemy as sa
from alembic import context, op

from app.domain.users import email_key

# revision identifiers, used by Alembic.
revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BATCH = 1000


def upgrade():
    op.execute("ALTER TABLE users ADD COLUMN IF NOT EXISTS email_key VARCHAR(320)")
    op.execute(
        """
        CREATE OR REPLACE FUNCTION users_keep_email_key() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.email IS NULL THEN
            NEW.email_key := NULL;
          ELSIF NEW.email_key IS NULL THEN
            NEW.email_key := lower(NEW.email);
          END IF;
          RETURN NEW;
        END $$
        """
    )
    op.execute(
        "CREATE OR REPLACE TRIGGER users_keep_email_key BEFORE INSERT OR UPDATE OF email, email_key ON users "
        "FOR EACH ROW EXECUTE FUNCTION users_keep_email_key()"
    )
    if not context.is_offline_mode():
        _backfill(op.get_bind())
    with op.get_context().autocommit_block():
        op.execute("SET statement_timeout = 0")  # a big table takes longer than 15 s
        op.create_index(
            "uq_users_email_key",
            "users",
            ["email_key"],
            unique=True,
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def _backfill(conn: sa.engine.Connection) -> None:
    """Every live address gets its key; of addresses that fold alike (``STRASSE``/``straße``),
    the oldest account keeps the key and the others keep ``lower()`` (they stay reachable as
    before, and an admin can merge them)."""
    seen: set[str] = set()
    last: tuple = ("-infinity", "00000000-0000-0000-0000-000000000000")
    while True:
        rows = conn.execute(
            sa.text(
                "SELECT id, email, created_at FROM users WHERE email IS NOT NULL "
                "AND (created_at, id) > (CAST(:at AS timestamptz), CAST(:id AS uuid)) "
                "ORDER BY created_at, id LIMIT :n"
            ),
            {"at": last[0], "id": str(last[1]), "n": BATCH},
        ).all()
        if not rows:
            return
        updates = []
        for row in rows:
            key = email_key(row.email)
            if key in seen:
                key = row.email.lower()
            seen.add(key)
            updates.append({"id": row.id, "key": key})
        conn.execute(sa.text("UPDATE users SET email_key = :key WHERE id = :id"), updates)
        last = (rows[-1].created_at, rows[-1].id)


def downgrade():
    with op.get_context().autocommit_block():
        op.drop_index("uq_users_email_key", table_name="users", postgresql_concurrently=True, if_exists=True)
    op.execute("DROP TRIGGER IF EXISTS users_keep_email_key ON users")
    op.execute("DROP FUNCTION IF EXISTS users_keep_email_key()")
    op.execute("ALTER TABLE users DROP COLUMN IF EXISTS email_key")
