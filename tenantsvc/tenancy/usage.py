"""``tenantctl usage``: how much each tenant holds, biggest first.

A platform team asks this before a migration (a plain index on a big tenant blocks its writes
while it builds: ``CREATE INDEX CONCURRENTLY`` is for those), when a database fills up, and to
bill. Everything comes from the server's own bookkeeping in one statement, whatever the fleet's
size: the sizes are the files' (``pg_table_size`` and ``pg_indexes_size``, TOAST included), the
row counts the statistics system's live-tuple counters (``pg_stat_get_live_tuples``), which
every committed insert and delete moves at once, where ``pg_class.reltuples`` waits for the
next VACUUM or ANALYZE. Soft-deleted rows are rows here: they take the same space.

An archived tenant is measured in its archived schema; one whose schema is not there (still
being provisioned) holds nothing.
"""

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, String, bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection

from tenantsvc.tenancy.models import TenantStatus
from tenantsvc.tenancy.slugs import SHARED_SCHEMA

_USAGE = text(f"""
SELECT * FROM (
    SELECT t.slug, t.status, coalesce(t.archived_schema, t.schema_name) AS schema,
           coalesce(sum(pg_stat_get_live_tuples(c.oid)), 0)::bigint AS rows,
           coalesce(sum(pg_table_size(c.oid)), 0)::bigint AS table_bytes,
           coalesce(sum(pg_indexes_size(c.oid)), 0)::bigint AS index_bytes
    FROM {SHARED_SCHEMA}.tenants t
    LEFT JOIN pg_namespace n ON n.nspname = coalesce(t.archived_schema, t.schema_name)
    LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'm')
                        AND c.relname <> 'alembic_version'
    WHERE :status IS NULL OR t.status = :status
    GROUP BY t.slug, t.status, t.archived_schema, t.schema_name
) usage
ORDER BY table_bytes + index_bytes DESC, slug
LIMIT :top
""").bindparams(bindparam("status", type_=String), bindparam("top", type_=Integer))  # noqa: S608


@dataclass(frozen=True)
class TenantUsage:
    slug: str
    status: str
    schema: str
    rows: int
    table_bytes: int
    index_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.table_bytes + self.index_bytes

    def as_json(self) -> dict[str, Any]:
        return {"slug": self.slug, "status": self.status, "schema": self.schema,
                "rows": self.rows, "table_bytes": self.table_bytes,
                "index_bytes": self.index_bytes, "total_bytes": self.total_bytes}  # fmt: skip


async def tenant_usage(
    conn: AsyncConnection, status: str | None = None, top: int | None = None
) -> list[TenantUsage]:
    """Every tenant (or those with ``status``), biggest first; ``top`` keeps the first few."""
    params = {"status": status and TenantStatus.parse(status).value, "top": top}
    result = await conn.execute(_USAGE, params)
    return [TenantUsage(**row._mapping) for row in result]
