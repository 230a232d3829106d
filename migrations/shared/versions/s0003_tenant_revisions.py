"""registry: each tenant's tenant-track revision, recorded with every migration

Planning a fleet migration then reads one table instead of opening every tenant's version
table (a thousand relation-cache loads on a fresh connection). The tenant's own
alembic_version stays the truth: it is re-read under the tenant's lock before migrating.

Revision ID: s0003
Revises: s0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "s0003"
down_revision: str | None = "s0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tenant_revisions",
        sa.Column(
            "tenant_id",
            sa.BigInteger,
            sa.ForeignKey("tenantsvc.tenants.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("revision", sa.String(32)),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        schema="tenantsvc",
    )
    op.execute(
        """
        DO $$
        DECLARE t record; found text;
        BEGIN
            FOR t IN SELECT id, coalesce(archived_schema, schema_name) AS s FROM tenantsvc.tenants LOOP
                found := NULL;
                IF to_regclass(quote_ident(t.s) || '.alembic_version') IS NOT NULL THEN
                    EXECUTE format('SELECT max(version_num) FROM %I.alembic_version', t.s) INTO found;
                END IF;
                INSERT INTO tenantsvc.tenant_revisions (tenant_id, revision) VALUES (t.id, found);
            END LOOP;
        END $$
        """
    )


def downgrade() -> None:
    op.drop_table("tenant_revisions", schema="tenantsvc")
