"""registry: each tenant's own database role (tenancy/roles.py)

Revision ID: s0008
Revises: s0007
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "s0008"
down_revision: str | None = "s0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL: the tenant's transactions run as the service's own role, as before.
    op.add_column("tenants", sa.Column("role_name", sa.String(63)), schema="tenantsvc")


def downgrade() -> None:
    # The roles stay (they belong to the cluster, not to this database's registry): without
    # the column the service stops using them, and `DROP ROLE` removes one by hand.
    op.drop_column("tenants", "role_name", schema="tenantsvc")
