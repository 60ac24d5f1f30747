"""Users gain email_verified_at (set when the e-mailed verification token is confirmed).

Expand only: a nullable column without a default; the previous release neither reads nor writes it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("users", sa.Column("email_verified_at", sa.DateTime(timezone=True), nullable=True))


def downgrade():
    op.drop_column("users", "email_verified_at")
