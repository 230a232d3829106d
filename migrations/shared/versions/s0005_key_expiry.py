"""registry: API keys that expire

Revision ID: s0005
Revises: s0004
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "s0005"
down_revision: str | None = "s0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "api_keys",
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        schema="tenantsvc",
    )


def downgrade() -> None:
    # Without the column an expired key would be valid again: revoke those first.
    op.execute(
        "UPDATE tenantsvc.api_keys SET revoked_at = coalesce(revoked_at, expires_at) "
        "WHERE expires_at IS NOT NULL AND expires_at <= now()"
    )
    op.drop_column("api_keys", "expires_at", schema="tenantsvc")
