"""gateway_events: the ids of the gateway's webhook events already processed (each once).

Expand only: a new table the previous release never touches.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    op.execute(
        "CREATE TABLE gateway_events ("
        "id VARCHAR(255) NOT NULL CONSTRAINT pk_gateway_events PRIMARY KEY, "
        "type VARCHAR(100) NOT NULL, "
        "received_at TIMESTAMP WITH TIME ZONE NOT NULL)"
    )


def downgrade():
    op.drop_table("gateway_events")
