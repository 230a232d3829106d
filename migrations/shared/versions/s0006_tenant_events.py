"""registry: tenant_events, the audit trail of every change to tenants, keys and revisions

Revision ID: s0006
Revises: s0005
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "s0006"
down_revision: str | None = "s0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "tenantsvc"

# Triggers, not the CLI, write the trail: a change made any way (tenantctl, a script, psql)
# is recorded in its own transaction, or not made. Who made it is the session's
# application_name (tenantctl sets "tenantctl <user>@<host>"; PgBouncer passes it on) and
# role. A purged tenant's events stay: they carry its slug, and no foreign key.
RECORD = f"""
CREATE FUNCTION {S}.record_tenant_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    who_id bigint;
    action text;
    detail jsonb;
BEGIN
    IF TG_TABLE_NAME = 'tenants' THEN
        IF TG_OP = 'INSERT' THEN
            who_id := NEW.id; action := 'created';
            detail := jsonb_build_object('name', NEW.name, 'schema', NEW.schema_name,
                                         'status', NEW.status);
        ELSIF TG_OP = 'DELETE' THEN
            INSERT INTO {S}.tenant_events (tenant_id, slug, action, detail)
            VALUES (OLD.id, OLD.slug, 'purged', jsonb_build_object('schema', OLD.schema_name));
            RETURN NULL;
        ELSE  -- an UPDATE, which may change both
            who_id := NEW.id;
            IF NEW.name IS DISTINCT FROM OLD.name THEN
                INSERT INTO {S}.tenant_events (tenant_id, slug, action, detail)
                VALUES (NEW.id, NEW.slug, 'renamed',
                        jsonb_build_object('from', OLD.name, 'to', NEW.name));
            END IF;
            IF NEW.status IS DISTINCT FROM OLD.status THEN
                action := 'status';
                detail := jsonb_build_object('from', OLD.status, 'to', NEW.status);
            END IF;
        END IF;
    ELSIF TG_TABLE_NAME = 'api_keys' THEN
        who_id := NEW.tenant_id;
        IF TG_OP = 'INSERT' THEN
            action := 'key_created';
            detail := jsonb_build_object('key_id', NEW.id, 'prefix', NEW.prefix,
                                         'expires_at', NEW.expires_at);
        ELSIF OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL THEN
            action := 'key_revoked';
            detail := jsonb_build_object('key_id', NEW.id, 'prefix', NEW.prefix);
        ELSIF NEW.expires_at IS DISTINCT FROM OLD.expires_at THEN  -- keys rotate
            action := 'key_expiry';
            detail := jsonb_build_object('key_id', NEW.id, 'prefix', NEW.prefix,
                                         'from', OLD.expires_at, 'to', NEW.expires_at);
        END IF;
    ELSIF NEW.revision IS DISTINCT FROM OLD.revision THEN  -- tenant_revisions
        who_id := NEW.tenant_id; action := 'migrated';
        detail := jsonb_build_object('from', OLD.revision, 'to', NEW.revision);
    END IF;
    IF action IS NOT NULL THEN
        INSERT INTO {S}.tenant_events (tenant_id, slug, action, detail)
        SELECT t.id, t.slug, action, detail FROM {S}.tenants t WHERE t.id = who_id;
    END IF;
    RETURN NULL;
END
$$
"""
TRIGGERS = {
    "tenants": "AFTER INSERT OR DELETE OR UPDATE OF status, name",
    "api_keys": "AFTER INSERT OR UPDATE OF revoked_at, expires_at",
    "tenant_revisions": "AFTER UPDATE OF revision",
}


def upgrade() -> None:
    op.create_table(
        "tenant_events",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("slug", sa.String(40), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("detail", sa.dialects.postgresql.JSONB, nullable=False),
        sa.Column(
            "actor", sa.Text, server_default=sa.text("current_setting('application_name')"),
            nullable=False,
        ),
        sa.Column("db_user", sa.Text, server_default=sa.text("session_user"), nullable=False),
        schema=S,
    )  # fmt: skip
    op.create_index("tenant_events_slug_id_idx", "tenant_events", ["slug", "id"], schema=S)
    op.execute(RECORD)
    for table, when in TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER record_event {when} ON {S}.{table} "
            f"FOR EACH ROW EXECUTE FUNCTION {S}.record_tenant_event()"
        )


def downgrade() -> None:
    for table in TRIGGERS:
        op.execute(f"DROP TRIGGER record_event ON {S}.{table}")
    op.execute(f"DROP FUNCTION {S}.record_tenant_event()")
    op.drop_table("tenant_events", schema=S)
