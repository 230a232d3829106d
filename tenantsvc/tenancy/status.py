"""``tenantctl status``: each tenant's revision against head, and drift from a fresh build.

The revision shown is read from each tenant's own version table (the truth), beside the
registry's record of it. Drift is judged only for tenants at head: their normalised catalog
digest must equal that of a schema built from scratch at head (built in a rolled-back
transaction, so nothing remains).
"""

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from tenantsvc.tenancy.catalog import fingerprints, reference_fingerprint
from tenantsvc.tenancy.migrator import head
from tenantsvc.tenancy.models import TenantRevisionRow, TenantRow, TenantStatus
from tenantsvc.tenancy.records import as_json
from tenantsvc.tenancy.revisions import read_revisions


@dataclass(frozen=True)
class TenantState:
    slug: str
    schema: str
    status: str
    revision: str | None
    recorded_revision: str | None  # the registry's record; differs only if bypassed
    at_head: bool
    drift: bool | None  # None: not at head, so not compared

    def as_json(self) -> dict[str, Any]:
        return as_json(self)


async def fleet_status(conn: AsyncConnection) -> tuple[str, list[TenantState]]:
    query = (
        select(TenantRow.slug, TenantRow.schema_name, TenantRow.status, TenantRevisionRow.revision)
        .outerjoin(TenantRevisionRow, TenantRevisionRow.tenant_id == TenantRow.id)
        .where(TenantRow.status != TenantStatus.ARCHIVED)
        .order_by(TenantRow.slug)
    )
    tenants = list(await conn.execute(query))
    target = head("tenant")
    revisions = await conn.run_sync(read_revisions, [t.schema_name for t in tenants])
    current = [t.schema_name for t in tenants if revisions[t.schema_name] == target]
    digests = await fingerprints(conn, current) if current else {}
    reference = await reference_fingerprint(conn, target) if current else ""
    states = []
    for slug, schema, status, recorded in tenants:
        at_head = revisions[schema] == target
        drift = (digests.get(schema) != reference) if at_head else None
        states.append(
            TenantState(slug, schema, status, revisions[schema], recorded, at_head, drift)
        )
    return target, states
