"""Products gain low_stock_threshold (SPEC §5.5)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 06:52:00

Expand only: a constant default (catalogue-only since PostgreSQL 11); the previous release inserts
products without it and gets the default.
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade():
    op.execute(
        "ALTER TABLE products ADD COLUMN low_stock_threshold INTEGER DEFAULT 5 NOT NULL "
        "CONSTRAINT ck_products_low_stock_threshold_non_negative CHECK (low_stock_threshold >= 0)"
    )


def downgrade():
    op.execute("ALTER TABLE products DROP COLUMN low_stock_threshold")
