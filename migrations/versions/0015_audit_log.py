"""audit_log: who changed what (SPEC §5.8), append-only

Revision ID: 0015
Revises: 0013
Create Date: 2026-12-02

Expand only: a new table the previous release does not know. A trigger refuses UPDATE and DELETE of
its rows (TRUNCATE, an operator's deliberate act, is not a row operation and stays possible).
"""

from alembic import op

revision = "0015"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade():
    op.execute(
        """
        CREATE TABLE audit_log (
          id UUID NOT NULL,
          actor_id UUID,
          actor_role VARCHAR(32) NOT NULL,
          action VARCHAR(64) NOT NULL,
          resource_type VARCHAR(32) NOT NULL,
          resource_id VARCHAR(128) NOT NULL,
          request_id VARCHAR(128),
          changes JSONB NOT NULL DEFAULT '{}'::jsonb,
          at TIMESTAMP WITH TIME ZONE NOT NULL,
          CONSTRAINT pk_audit_log PRIMARY KEY (id)
        )
        """
    )
    op.execute("CREATE INDEX ix_audit_log_at ON audit_log (at)")
    op.execute("CREATE INDEX ix_audit_log_resource ON audit_log (resource_type, resource_id, at)")
    op.execute("CREATE INDEX ix_audit_log_actor_id_at ON audit_log (actor_id, at)")
    op.execute(
        """
        CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
    )


def downgrade():
    op.execute("DROP TABLE audit_log")
    op.execute("DROP FUNCTION audit_log_append_only()")
