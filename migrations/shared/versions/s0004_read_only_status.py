"""registry: the read_only status (reads served, writes refused: maintenance, moves)

Revision ID: s0004
Revises: s0003
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op

revision: str = "s0004"
down_revision: str | None = "s0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "tenantsvc"
BEFORE = "('provisioning', 'active', 'suspended', 'archived')"
AFTER = "('provisioning', 'active', 'read_only', 'suspended', 'archived')"


def upgrade() -> None:
    op.drop_constraint("status_known", "tenants", schema=S)
    op.create_check_constraint("status_known", "tenants", f"status IN {AFTER}", schema=S)


def downgrade() -> None:
    # The status that takes no writes either: a downgrade never lets a tenant write again.
    op.execute(f"UPDATE {S}.tenants SET status = 'suspended' WHERE status = 'read_only'")
    op.drop_constraint("status_known", "tenants", schema=S)
    op.create_check_constraint("status_known", "tenants", f"status IN {BEFORE}", schema=S)
