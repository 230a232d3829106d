"""registry: tenants, API keys and the registry version counter

Revision ID: s0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "s0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "tenantsvc"
STATUSES = "('provisioning', 'active', 'suspended', 'archived')"


def upgrade() -> None:
    op.execute(f"CREATE SCHEMA IF NOT EXISTS {S}")
    op.create_table(
        "tenants",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("slug", sa.String(40), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("schema_name", sa.String(63), nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        # The schema name reaches SQL as an identifier; the database itself refuses any
        # value the slug rules would not produce.
        sa.CheckConstraint(
            "schema_name ~ '^tenant_[a-z][a-z0-9_]{1,39}$' AND schema_name = 'tenant_' || slug",
            name="schema_name_safe",
        ),
        sa.CheckConstraint(f"status IN {STATUSES}", name="status_known"),
        schema=S,
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "tenant_id",
            sa.BigInteger,
            sa.ForeignKey(f"{S}.tenants.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        schema=S,
    )
    op.create_table(
        "registry_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.CheckConstraint("id = 1", name="singleton"),
        schema=S,
    )
    op.execute(f"INSERT INTO {S}.registry_state (id, version) VALUES (1, 0)")
    op.execute(
        f"""
        CREATE FUNCTION {S}.bump_registry_version() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE {S}.registry_state SET version = version + 1 WHERE id = 1;
            RETURN NULL;
        END $$
        """
    )
    for table in ("tenants", "api_keys"):
        op.execute(
            f"CREATE TRIGGER {table}_bump_registry AFTER INSERT OR UPDATE OR DELETE "
            f"ON {S}.{table} FOR EACH STATEMENT EXECUTE FUNCTION {S}.bump_registry_version()"
        )


def downgrade() -> None:
    op.drop_table("registry_state", schema=S)
    op.drop_table("api_keys", schema=S)
    op.drop_table("tenants", schema=S)
    op.execute(f"DROP FUNCTION {S}.bump_registry_version()")
