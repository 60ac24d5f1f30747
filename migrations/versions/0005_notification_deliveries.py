"""Notifications keep every delivery attempt, and a permanent rejection (SMTP 5xx) is marked.

Expand only: two columns with constant defaults (catalogue-only since PostgreSQL 11, no rewrite).
The previous release neither reads nor writes them; its inserts get the defaults.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    op.execute("ALTER TABLE notifications ADD COLUMN deliveries JSONB DEFAULT '[]'::jsonb NOT NULL")
    op.execute("ALTER TABLE notifications ADD COLUMN permanent_failure BOOLEAN DEFAULT false NOT NULL")


def downgrade():
    op.drop_column("notifications", "permanent_failure")
    op.drop_column("notifications", "deliveries")
