"""refunds: partial refunds, each with its own gateway status; the payment statuses of release 2.

Expand only: a new table the previous release never touches, and a wider status check on
payments (PARTIALLY_REFUNDED, REQUIRES_ACTION, PROCESSING) added NOT VALID then validated, so
no write is blocked while the rows are checked; the old, narrower check is dropped after it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None
# The narrow check is dropped only once the wider one holds: it forbade exactly the statuses this
# release adds, and no client relies on a payment never being PARTIALLY_REFUNDED.
# Outside the transaction: VALIDATE (rerunnable as it is) and a DROP ... IF EXISTS.
# payments.status VARCHAR(16) → VARCHAR(32) (PARTIALLY_REFUNDED is 18 characters): widening a
# varchar is a catalogue change in Postgres, no table rewrite and no long lock.
squawk_exclude = ["ban-drop-constraint", "prefer-robust-stmts", "changing-column-type"]

WIDE = (
    "status IN ('PENDING', 'COMPLETED', 'FAILED', 'REFUNDED', 'PARTIALLY_REFUNDED', "
    "'REQUIRES_ACTION', 'PROCESSING')"
)


def upgrade():
    op.execute(
        "CREATE TABLE IF NOT EXISTS refunds ("
        "id UUID NOT NULL CONSTRAINT pk_refunds PRIMARY KEY, "
        "payment_id UUID NOT NULL CONSTRAINT fk_refunds_payment_id_payments REFERENCES payments (id), "
        "amount NUMERIC(12, 2) NOT NULL CONSTRAINT ck_refunds_amount_positive CHECK (amount > 0), "
        "status VARCHAR(16) NOT NULL "
        "CONSTRAINT ck_refunds_status CHECK (status IN ('PENDING', 'SUCCEEDED', 'FAILED')), "
        "reason TEXT, "
        "failure_reason TEXT, "
        "gateway_reference VARCHAR(255), "
        "attempts INTEGER DEFAULT 0 NOT NULL, "
        "created_at TIMESTAMP WITH TIME ZONE NOT NULL, "
        "updated_at TIMESTAMP WITH TIME ZONE NOT NULL)"
    )
    op.execute("CREATE INDEX IF NOT EXISTS ix_refunds_payment_id ON refunds (payment_id)")
    op.execute("CREATE INDEX IF NOT EXISTS ix_refunds_status_updated_at ON refunds (status, updated_at)")
    op.execute("CREATE UNIQUE INDEX IF NOT EXISTS uq_refunds_gateway_reference ON refunds (gateway_reference)")
    op.execute("ALTER TABLE payments ALTER COLUMN status TYPE VARCHAR(32)")
    op.execute(f"ALTER TABLE payments ADD CONSTRAINT ck_payments_status_r2 CHECK ({WIDE}) NOT VALID")
    with op.get_context().autocommit_block():
        # Its own transaction: validating takes only a SHARE UPDATE EXCLUSIVE lock.
        op.execute("ALTER TABLE payments VALIDATE CONSTRAINT ck_payments_status_r2")
        op.execute("ALTER TABLE payments DROP CONSTRAINT IF EXISTS ck_payments_status")


def downgrade():
    op.execute(
        "ALTER TABLE payments ADD CONSTRAINT ck_payments_status "
        "CHECK (status IN ('PENDING', 'COMPLETED', 'FAILED', 'REFUNDED')) NOT VALID"
    )
    op.execute("ALTER TABLE payments DROP CONSTRAINT ck_payments_status_r2")
    op.drop_table("refunds")
