"""registry: when each API key was last used

Revision ID: s0007
Revises: s0006
Create Date: 2026-11-26

A table of its own rather than a column of api_keys: each worker writes it about once a
minute, and a write to api_keys would bump the registry version (every worker reloading its
snapshot) and pass through the audit trigger.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "s0007"
down_revision: str | None = "s0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_key_usage",
        sa.Column(
            "key_id",
            sa.BigInteger,
            sa.ForeignKey("tenantsvc.api_keys.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=False),
        schema="tenantsvc",
    )


def downgrade() -> None:
    op.drop_table("api_key_usage", schema="tenantsvc")
