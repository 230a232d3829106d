"""domain: users, products, orders, order_items

Revision ID: t0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "t0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _created_at() -> sa.Column[object]:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        _created_at(),
    )
    op.create_table(
        "products",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("price_cents", sa.BigInteger, nullable=False),
        sa.Column("stock", sa.Integer, nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True)),
        _created_at(),
        sa.CheckConstraint("stock >= 0", name="stock_nonnegative"),
        sa.CheckConstraint("price_cents >= 0", name="price_nonnegative"),
    )
    op.create_index(
        "products_live_id_idx", "products", ["id"], postgresql_where="deleted_at IS NULL"
    )
    op.create_table(
        "orders",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("user_id", sa.BigInteger, sa.ForeignKey("users.id"), nullable=False),
        _created_at(),
    )
    op.create_index("orders_user_id_id_idx", "orders", ["user_id", "id"])
    op.create_table(
        "order_items",
        sa.Column(
            "order_id",
            sa.BigInteger,
            sa.ForeignKey("orders.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("product_id", sa.BigInteger, sa.ForeignKey("products.id"), primary_key=True),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("unit_price_cents", sa.BigInteger, nullable=False),
        sa.CheckConstraint("quantity > 0", name="quantity_positive"),
    )
    op.create_index("order_items_product_id_idx", "order_items", ["product_id"])


def downgrade() -> None:
    # Dropping the tables drops the tenant's rows with them: refuse while it has any. Deleting
    # a tenant's data is `tenantctl drop --purge`, which asks first.
    op.execute(
        "DO $$ BEGIN IF EXISTS (SELECT FROM users) OR EXISTS (SELECT FROM products) "
        "OR EXISTS (SELECT FROM orders) THEN RAISE EXCEPTION "
        "'the tenant has rows: t0001 cannot be undone (drop --purge deletes a tenant)'; "
        "END IF; END $$"
    )
    op.drop_table("order_items")
    op.drop_table("orders")
    op.drop_table("products")
    op.drop_table("users")
