"""orders.cancelled_at: a cancelled order keeps its rows, and its stock went back; an index of
the cancelled ones

Revision ID: t0003
Revises: t0002
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "t0003"
down_revision: str | None = "t0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: PostgreSQL adds the column without rewriting the table.
    op.add_column("orders", sa.Column("cancelled_at", sa.DateTime(timezone=True)))
    # GET /orders?status=cancelled pages through the few cancelled orders without a scan.
    op.create_index(
        "orders_cancelled_id_idx", "orders", ["id"], postgresql_where="cancelled_at IS NOT NULL"
    )


def downgrade() -> None:
    # Without the column a cancelled order would count as placed again, while its stock is
    # back on the shelf: refuse rather than lose that.
    op.execute(
        "DO $$ BEGIN IF EXISTS (SELECT FROM orders WHERE cancelled_at IS NOT NULL) THEN "
        "RAISE EXCEPTION 'cancelled orders exist: t0003 cannot be undone'; END IF; END $$"
    )
    op.drop_index("orders_cancelled_id_idx", table_name="orders")
    op.drop_column("orders", "cancelled_at")
