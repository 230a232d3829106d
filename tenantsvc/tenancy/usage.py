"""``tenantctl usage``: how much each tenant holds and how much it asks, biggest (or busiest)
first; ``tenantctl requests``: one tenant's requests per day.

A platform team asks this before a migration (a plain index on a big tenant blocks its writes
while it builds: ``CREATE INDEX CONCURRENTLY`` is for those), when a database fills up, and to
bill. Everything comes from the server's own bookkeeping in one statement, whatever the fleet's
size: the sizes are the files' (``pg_table_size`` and ``pg_indexes_size``, TOAST included), the
row counts the statistics system's live-tuple counters (``pg_stat_get_live_tuples``), which
every committed insert and delete moves at once, where ``pg_class.reltuples`` waits for the
next VACUUM or ANALYZE. Soft-deleted rows are rows here: they take the same space.

An archived tenant is measured in its archived schema; one whose schema is not there (still
being provisioned) holds nothing. Requests are what the workers served, reads and writes, as
they record them about once a minute (``activity.py``).
"""

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Integer, String, bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection

from tenantsvc.tenancy.admin import get_tenant
from tenantsvc.tenancy.errors import TenancyError
from tenantsvc.tenancy.models import TenantStatus
from tenantsvc.tenancy.records import as_json
from tenantsvc.tenancy.slugs import SHARED_SCHEMA

SORTS = ("size", "requests")
_TODAY = "(now() AT TIME ZONE 'UTC')::date"  # the days of tenant_requests are UTC days
_PARAMS = (
    bindparam("status", type_=String),
    bindparam("top", type_=Integer),
    bindparam("days", type_=Integer),
    bindparam("by", type_=String),
)
_USAGE = text(f"""
SELECT * FROM (
    SELECT t.slug, t.status, coalesce(t.archived_schema, t.schema_name) AS schema,
           coalesce(sum(pg_stat_get_live_tuples(c.oid)), 0)::bigint AS rows,
           coalesce(sum(pg_table_size(c.oid)), 0)::bigint AS table_bytes,
           coalesce(sum(pg_indexes_size(c.oid)), 0)::bigint AS index_bytes,
           req.reads, req.writes
    FROM {SHARED_SCHEMA}.tenants t
    CROSS JOIN LATERAL (
        SELECT coalesce(sum(r.reads), 0)::bigint AS reads,
               coalesce(sum(r.writes), 0)::bigint AS writes
        FROM {SHARED_SCHEMA}.tenant_requests r
        WHERE r.tenant_id = t.id AND r.day > {_TODAY} - :days
    ) req
    LEFT JOIN pg_namespace n ON n.nspname = coalesce(t.archived_schema, t.schema_name)
    LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'm')
                        AND c.relname <> 'alembic_version'
    WHERE :status IS NULL OR t.status = :status
    GROUP BY t.slug, t.status, t.archived_schema, t.schema_name, req.reads, req.writes
) usage
ORDER BY CASE WHEN :by = 'requests' THEN reads + writes ELSE table_bytes + index_bytes END DESC,
         slug
LIMIT :top
""").bindparams(*_PARAMS)  # noqa: S608
_DAILY = text(f"""
SELECT r.day, r.reads, r.writes FROM {SHARED_SCHEMA}.tenant_requests r
WHERE r.tenant_id = :tenant_id AND r.day > {_TODAY} - :days
ORDER BY r.day DESC
""").bindparams(bindparam("days", type_=Integer))  # noqa: S608


@dataclass(frozen=True)
class TenantUsage:
    slug: str
    status: str
    schema: str
    rows: int
    table_bytes: int
    index_bytes: int
    reads: int = 0  # requests served over the days asked for
    writes: int = 0

    @property
    def total_bytes(self) -> int:
        return self.table_bytes + self.index_bytes

    def as_json(self) -> dict[str, Any]:
        return {**as_json(self), "total_bytes": self.total_bytes}


async def tenant_usage(
    conn: AsyncConnection,
    status: str | None = None,
    top: int | None = None,
    days: int = 30,
    by: str = "size",
) -> list[TenantUsage]:
    """Every tenant (or those with ``status``), with its requests over the last ``days`` UTC
    days (today's included), biggest (``by="requests"``: busiest) first; ``top`` keeps the
    first few."""
    if by not in SORTS:
        raise TenancyError(f"unknown order {by!r}: use one of {', '.join(SORTS)}")
    params = {"status": status and TenantStatus.parse(status).value, "top": top, "days": days,
              "by": by}  # fmt: skip
    result = await conn.execute(_USAGE, params)
    return [TenantUsage(**row._mapping) for row in result]


@dataclass(frozen=True)
class DayRequests:
    day: date
    reads: int
    writes: int

    def as_json(self) -> dict[str, Any]:
        return as_json(self)


async def daily_requests(conn: AsyncConnection, slug: str, days: int = 30) -> list[DayRequests]:
    """One tenant's requests per UTC day over the last ``days``, newest first; days without
    requests are left out."""
    tenant = await get_tenant(conn, slug)
    result = await conn.execute(_DAILY, {"tenant_id": tenant.id, "days": days})
    return [DayRequests(*row) for row in result]
