"""webhook_endpoints, webhook_messages, webhook_deliveries: outbound webhooks (SPEC §5.4)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02

Expand only: new tables the previous release does not know.
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade():
    op.execute(
        """
        CREATE TABLE webhook_endpoints (
          id UUID NOT NULL,
          url TEXT NOT NULL,
          events JSONB NOT NULL,
          description TEXT NOT NULL DEFAULT '',
          enabled BOOLEAN NOT NULL DEFAULT true,
          secret TEXT NOT NULL,
          previous_secret TEXT,
          previous_secret_expires_at TIMESTAMP WITH TIME ZONE,
          consecutive_failures INTEGER NOT NULL DEFAULT 0,
          disabled_reason TEXT,
          created_at TIMESTAMP WITH TIME ZONE NOT NULL,
          updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
          CONSTRAINT pk_webhook_endpoints PRIMARY KEY (id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE webhook_messages (
          id UUID NOT NULL,
          outbox_id BIGINT,
          event_type VARCHAR(64) NOT NULL,
          data_kind VARCHAR(16) NOT NULL,
          resource_id VARCHAR(64),
          data JSONB,
          body TEXT,
          occurred_at TIMESTAMP WITH TIME ZONE NOT NULL,
          CONSTRAINT pk_webhook_messages PRIMARY KEY (id),
          CONSTRAINT uq_webhook_messages_outbox_id UNIQUE (outbox_id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE webhook_deliveries (
          id UUID NOT NULL,
          endpoint_id UUID NOT NULL,
          message_id UUID NOT NULL,
          status VARCHAR(16) NOT NULL,
          attempts INTEGER NOT NULL DEFAULT 0,
          retries_used INTEGER NOT NULL DEFAULT 0,
          last_status_code INTEGER,
          last_error TEXT,
          next_attempt_at TIMESTAMP WITH TIME ZONE,
          lease_until TIMESTAMP WITH TIME ZONE,
          queued_at TIMESTAMP WITH TIME ZONE,
          created_at TIMESTAMP WITH TIME ZONE NOT NULL,
          delivered_at TIMESTAMP WITH TIME ZONE,
          CONSTRAINT pk_webhook_deliveries PRIMARY KEY (id),
          CONSTRAINT ck_webhook_deliveries_status CHECK (status IN ('PENDING', 'SUCCEEDED', 'FAILED')),
          CONSTRAINT uq_webhook_deliveries_endpoint_message UNIQUE (endpoint_id, message_id),
          CONSTRAINT fk_webhook_deliveries_endpoint_id_webhook_endpoints FOREIGN KEY (endpoint_id)
            REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
          CONSTRAINT fk_webhook_deliveries_message_id_webhook_messages FOREIGN KEY (message_id)
            REFERENCES webhook_messages (id) ON DELETE CASCADE
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_webhook_deliveries_endpoint_id_created_at ON webhook_deliveries (endpoint_id, created_at)"
    )
    op.execute(
        "CREATE INDEX ix_webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'PENDING'"
    )


def downgrade():
    op.execute("DROP TABLE webhook_deliveries")
    op.execute("DROP TABLE webhook_messages")
    op.execute("DROP TABLE webhook_endpoints")
