"""Payments gain intent_id: the PaymentIntent created before it is confirmed.

Expand only: a nullable column without a default is a catalogue-only change (no rewrite, no
scan); the previous release neither reads nor writes it, so both releases run side by side.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    op.execute("ALTER TABLE payments ADD COLUMN intent_id VARCHAR(255)")


def downgrade():
    op.drop_column("payments", "intent_id")
