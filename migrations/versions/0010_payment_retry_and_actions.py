"""orders.payment_due_by and the payment's attempt round, next action and dispute (release 2).

Expand only: nullable (or defaulted) columns the previous release never reads or writes.

- ``orders.payment_due_by``: a declined order waits for another payment attempt until then.
- ``payments.charge_round``: 1 for the first attempt, +1 per retry; each round has its own
  gateway idempotency keys (a new PaymentIntent).
- ``payments.next_action_type`` / ``client_secret``: what the customer must do (3-D Secure).
- ``payments.dispute_*``: the cardholder's dispute, as the gateway reports it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade():
    op.execute("ALTER TABLE orders ADD COLUMN IF NOT EXISTS payment_due_by TIMESTAMP WITH TIME ZONE")
    op.execute("ALTER TABLE payments ADD COLUMN IF NOT EXISTS charge_round INTEGER DEFAULT 1 NOT NULL")
    op.execute("ALTER TABLE payments ADD COLUMN IF NOT EXISTS next_action_type VARCHAR(64)")
    op.execute("ALTER TABLE payments ADD COLUMN IF NOT EXISTS client_secret VARCHAR(255)")
    op.execute("ALTER TABLE payments ADD COLUMN IF NOT EXISTS dispute_reference VARCHAR(255)")
    op.execute("ALTER TABLE payments ADD COLUMN IF NOT EXISTS dispute_status VARCHAR(32)")
    op.execute("ALTER TABLE payments ADD COLUMN IF NOT EXISTS dispute_reason VARCHAR(64)")
    op.execute("ALTER TABLE payments ADD COLUMN IF NOT EXISTS dispute_amount NUMERIC(12, 2)")


def downgrade():
    for column in (
        "dispute_amount",
        "dispute_reason",
        "dispute_status",
        "dispute_reference",
        "client_secret",
        "next_action_type",
        "charge_round",
    ):
        op.execute(f"ALTER TABLE payments DROP COLUMN IF EXISTS {column}")
    op.execute("ALTER TABLE orders DROP COLUMN IF EXISTS payment_due_by")
