"""registry: a purged tenant's slug taken again gets a schema name of its own, tenant_<n>_<slug>

Revision ID: s0010
Revises: s0009
Create Date: 2026-11-27

A worker whose registry snapshot predates a purge, or a replica that has not replayed it, would
otherwise find the new tenant's tables under the old tenant's schema name
(``provisioning.unused_schema``). The check still admits only what the slug rules produce, now
with the number in front for the slug's later tenants.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "s0010"
down_revision: str | None = "s0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "tenantsvc"
FIRST = "schema_name ~ '^tenant_[a-z][a-z0-9_]{1,39}$' AND schema_name = 'tenant_' || slug"
ANY = (
    "schema_name ~ '^tenant_([1-9][0-9]{0,14}_)?[a-z][a-z0-9_]{1,39}$' AND "
    "schema_name = 'tenant_' || coalesce(substring(schema_name FROM '^tenant_([1-9][0-9]{0,14})_')"
    " || '_', '') || slug"
)


def _check(condition: str) -> None:
    op.drop_constraint("schema_name_safe", "tenants", schema=S)
    op.create_check_constraint("schema_name_safe", "tenants", condition, schema=S)


def upgrade() -> None:
    _check(ANY)


def downgrade() -> None:
    _check(FIRST)  # refused while a tenant has a numbered schema: purge or rename it first
