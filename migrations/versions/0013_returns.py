"""Returns and their lines; the stock ledger accepts reason RETURN (SPEC §5.2)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 06:54:00

Expand only: new tables, and a wider CHECK on ``stock_movements.reason`` (the previous release writes
only the reasons it knows, all still accepted). The new CHECK is added NOT VALID (no scan of the
ledger under a lock: the rows already there satisfy the narrower CHECK it replaces, so validating
them proves nothing new; every new row is checked), then the narrow one is dropped.
"""

from alembic import op

# The narrow CHECK is replaced by the wider one in the same transaction: no guarantee is lost, and the
# previous release only writes reasons both accept.
squawk_exclude = ["ban-drop-constraint"]

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade():
    op.execute(
        """
        CREATE TABLE returns (
            id UUID NOT NULL,
            order_id UUID NOT NULL,
            status VARCHAR(16) NOT NULL,
            reason VARCHAR(32) NOT NULL,
            note TEXT,
            refund_amount NUMERIC(12, 2) NOT NULL,
            restocked BOOLEAN,
            created_at TIMESTAMP WITH TIME ZONE NOT NULL,
            received_at TIMESTAMP WITH TIME ZONE,
            refunded_at TIMESTAMP WITH TIME ZONE,
            refund_id UUID,
            CONSTRAINT pk_returns PRIMARY KEY (id),
            CONSTRAINT fk_returns_order_id_orders FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE,
            CONSTRAINT ck_returns_status CHECK (status IN ('REQUESTED', 'RECEIVED', 'REFUNDED', 'REJECTED'))
        )
        """
    )
    op.execute("CREATE INDEX ix_returns_order_id_created_at ON returns (order_id, created_at)")
    op.execute("CREATE INDEX ix_returns_refund_id ON returns (refund_id)")
    op.execute(
        """
        CREATE TABLE return_items (
            return_id UUID NOT NULL,
            product_id UUID NOT NULL,
            quantity INTEGER NOT NULL,
            refund_amount NUMERIC(12, 2) NOT NULL,
            CONSTRAINT pk_return_items PRIMARY KEY (return_id, product_id),
            CONSTRAINT fk_return_items_return_id_returns FOREIGN KEY (return_id)
                REFERENCES returns (id) ON DELETE CASCADE,
            CONSTRAINT ck_return_items_quantity_positive CHECK (quantity >= 1)
        )
        """
    )
    op.execute(
        "ALTER TABLE stock_movements ADD CONSTRAINT ck_stock_movements_reason_r2 CHECK "
        "(reason IN ('RESTOCK', 'ADJUSTMENT', 'ORDER_RESERVE', 'ORDER_RELEASE', 'RETURN')) NOT VALID"
    )
    op.execute("ALTER TABLE stock_movements DROP CONSTRAINT ck_stock_movements_reason")


def downgrade():
    op.execute("DELETE FROM stock_movements WHERE reason = 'RETURN'")
    op.execute(
        "ALTER TABLE stock_movements ADD CONSTRAINT ck_stock_movements_reason CHECK "
        "(reason IN ('RESTOCK', 'ADJUSTMENT', 'ORDER_RESERVE', 'ORDER_RELEASE')) NOT VALID"
    )
    op.execute("ALTER TABLE stock_movements DROP CONSTRAINT ck_stock_movements_reason_r2")
    op.execute("DROP TABLE return_items")
    op.execute("DROP TABLE returns")
