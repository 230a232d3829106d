"""registry: when each API key was last used, and each tenant's requests per day

Revision ID: s0007
Revises: s0006
Create Date: 2026-11-26

Tables of their own rather than columns of api_keys and tenants: each worker writes them about
once a minute (``tenancy/activity.py``), and a write to the registry tables would bump the
registry version (every worker reloading its snapshot) and pass through the audit trigger.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "s0007"
down_revision: str | None = "s0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _references(table: str) -> sa.ForeignKey:
    return sa.ForeignKey(f"tenantsvc.{table}.id", ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "api_key_usage",
        sa.Column("key_id", sa.BigInteger, _references("api_keys"), primary_key=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=False),
        schema="tenantsvc",
    )
    op.create_table(
        "tenant_requests",
        sa.Column("tenant_id", sa.BigInteger, _references("tenants"), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),  # UTC
        sa.Column("reads", sa.BigInteger, nullable=False),
        sa.Column("writes", sa.BigInteger, nullable=False),
        schema="tenantsvc",
    )


def downgrade() -> None:
    op.drop_table("tenant_requests", schema="tenantsvc")
    op.drop_table("api_key_usage", schema="tenantsvc")
