"""registry: where an archived tenant's schema was moved

Revision ID: s0002
Revises: s0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "s0002"
down_revision: str | None = "s0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "tenants", sa.Column("archived_schema", sa.String(63), nullable=True), schema="tenantsvc"
    )
    op.create_check_constraint(
        "archived_schema_safe",
        "tenants",
        "archived_schema ~ '^archived_[0-9]+_[a-z][a-z0-9_]{1,39}$'",
        schema="tenantsvc",
    )


def downgrade() -> None:
    op.drop_constraint("archived_schema_safe", "tenants", schema="tenantsvc")
    op.drop_column("tenants", "archived_schema", schema="tenantsvc")
