"""Account tokens (password reset); notifications may refer to the token their e-mail carries.

Expand only: a new table, and a nullable column the previous release neither reads nor writes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "account_tokens",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("user_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_account_tokens"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_account_tokens_user_id_users"),
        sa.CheckConstraint("purpose IN ('PASSWORD_RESET', 'VERIFY_EMAIL')", name="ck_account_tokens_purpose"),
    )
    # A new, empty table: no concurrent index build is needed.
    op.create_index("uq_account_tokens_token_hash", "account_tokens", ["token_hash"], unique=True)
    op.create_index("ix_account_tokens_user_id", "account_tokens", ["user_id"])
    op.add_column("notifications", sa.Column("account_token_id", postgresql.UUID(as_uuid=True), nullable=True))


def downgrade():
    op.drop_column("notifications", "account_token_id")
    op.drop_table("account_tokens")
