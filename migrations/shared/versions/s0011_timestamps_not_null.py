"""registry: the timestamps every row gets by default are NOT NULL, as the models say

Revision ID: s0011
Revises: s0010
Create Date: 2026-11-27

s0001 and s0003 gave them a default but left them nullable, so ``alembic --name shared check``
(and every ``revision --autogenerate``) planned this change. A row given NULL by hand takes
the time of this migration, the nearest thing to when it was written that is known.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "s0011"
down_revision: str | None = "s0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "tenantsvc"
COLUMNS = (("tenants", "created_at"), ("tenants", "updated_at"), ("api_keys", "created_at"),
           ("tenant_revisions", "updated_at"))  # fmt: skip


def upgrade() -> None:
    for table, column in COLUMNS:
        op.execute(f"UPDATE {S}.{table} SET {column} = now() WHERE {column} IS NULL")
        op.alter_column(table, column, nullable=False, schema=S)


def downgrade() -> None:
    for table, column in COLUMNS:
        op.alter_column(table, column, nullable=True, schema=S)
