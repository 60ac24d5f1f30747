"""Shipments: the order's shipping address, shipments with tracking, units shipped and returned per line

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 06:50:00

Expand only: the previous release reads and writes ``orders`` and ``order_items`` without knowing the
new columns (nullable, or with a constant default: catalogue-only changes since PostgreSQL 11, no
rewrite), and never touches the new tables.
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade():
    op.execute("ALTER TABLE orders ADD COLUMN shipping_address JSONB")
    op.execute("ALTER TABLE order_items ADD COLUMN quantity_shipped INTEGER DEFAULT 0 NOT NULL")
    op.execute("ALTER TABLE order_items ADD COLUMN quantity_returned INTEGER DEFAULT 0 NOT NULL")
    op.execute(
        """
        CREATE TABLE shipments (
            id UUID NOT NULL,
            order_id UUID NOT NULL,
            carrier VARCHAR(100),
            tracking_number VARCHAR(100),
            tracking_url VARCHAR(2048),
            status VARCHAR(16) NOT NULL,
            shipped_at TIMESTAMP WITH TIME ZONE NOT NULL,
            delivered_at TIMESTAMP WITH TIME ZONE,
            CONSTRAINT pk_shipments PRIMARY KEY (id),
            CONSTRAINT fk_shipments_order_id_orders FOREIGN KEY (order_id)
                REFERENCES orders (id) ON DELETE CASCADE,
            CONSTRAINT ck_shipments_status CHECK (status IN ('SHIPPED', 'DELIVERED'))
        )
        """
    )
    op.execute("CREATE INDEX ix_shipments_order_id_shipped_at ON shipments (order_id, shipped_at)")
    op.execute(
        """
        CREATE TABLE shipment_items (
            shipment_id UUID NOT NULL,
            product_id UUID NOT NULL,
            quantity INTEGER NOT NULL,
            CONSTRAINT pk_shipment_items PRIMARY KEY (shipment_id, product_id),
            CONSTRAINT fk_shipment_items_shipment_id_shipments FOREIGN KEY (shipment_id)
                REFERENCES shipments (id) ON DELETE CASCADE,
            CONSTRAINT ck_shipment_items_quantity_positive CHECK (quantity >= 1)
        )
        """
    )


def downgrade():
    op.execute("DROP TABLE shipment_items")
    op.execute("DROP TABLE shipments")
    op.execute("ALTER TABLE order_items DROP COLUMN quantity_returned")
    op.execute("ALTER TABLE order_items DROP COLUMN quantity_shipped")
    op.execute("ALTER TABLE orders DROP COLUMN shipping_address")
