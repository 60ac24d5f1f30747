"""Feature toggles gain rollout_percent; the returns and payment-retry toggles exist.

Expand only: the previous release reads and writes ``features`` without knowing the column (its
default, 100, means "everyone", today's behaviour), so both releases run side by side on it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    # A constant default: since PostgreSQL 11 a catalogue-only change, no table rewrite. The CHECK
    # comes with the column, so it is checked against the features' rows (a handful) only.
    op.execute(
        "ALTER TABLE features ADD COLUMN rollout_percent INTEGER DEFAULT 100 NOT NULL "
        "CONSTRAINT ck_features_rollout_percent CHECK (rollout_percent BETWEEN 0 AND 100)"
    )
    op.execute(
        "INSERT INTO features (name, enabled, description, updated_at) VALUES "
        "('returns', true, 'Customers request returns of delivered orders', now()), "
        "('payment-retry', true, 'Customers retry a failed payment', now()) "
        "ON CONFLICT (name) DO NOTHING"
    )


def downgrade():
    op.execute("DELETE FROM features WHERE name IN ('returns', 'payment-retry')")
    op.drop_column("features", "rollout_percent")  # its CHECK goes with it
