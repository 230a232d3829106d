"""Archive, restore, purge and rename: each one transaction over schema and registry row.

Archiving renames the schema out of the way (``archived_<id>_<slug>``) and marks the row
archived: workers stop serving it within one registry poll, and even a stale worker would
find no tables under the old name rather than serve archived data. Restoring renames it back,
every row intact. Purging drops the schema and the row for good.
"""

from sqlalchemy import delete, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tenantsvc.tenancy.admin import TenantInfo, get_tenant
from tenantsvc.tenancy.errors import TenancyError
from tenantsvc.tenancy.models import TenantRow, TenantStatus
from tenantsvc.tenancy.roles import drop_role
from tenantsvc.tenancy.slugs import display_name


def _quote(conn: AsyncConnection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote_identifier(name)


async def _rename_schema(conn: AsyncConnection, old: str, new: str) -> None:
    await conn.execute(text(f"ALTER SCHEMA {_quote(conn, old)} RENAME TO {_quote(conn, new)}"))


async def archive(conn: AsyncConnection, slug: str) -> TenantInfo:
    tenant = await get_tenant(conn, slug)
    if tenant.status == TenantStatus.ARCHIVED:
        raise TenancyError(f"tenant {slug!r} is already archived")
    moved_to = f"archived_{tenant.id}_{tenant.slug}"
    await _rename_schema(conn, tenant.schema, moved_to)
    await conn.execute(
        update(TenantRow)
        .where(TenantRow.id == tenant.id)
        .values(status=TenantStatus.ARCHIVED, archived_schema=moved_to)
    )
    return await get_tenant(conn, slug)


async def restore(conn: AsyncConnection, slug: str) -> TenantInfo:
    tenant = await get_tenant(conn, slug)
    if tenant.status != TenantStatus.ARCHIVED or tenant.archived_schema is None:
        raise TenancyError(f"tenant {slug!r} is not archived")
    await _rename_schema(conn, tenant.archived_schema, tenant.schema)
    await conn.execute(
        update(TenantRow)
        .where(TenantRow.id == tenant.id)
        .values(status=TenantStatus.ACTIVE, archived_schema=None)
    )
    return await get_tenant(conn, slug)


async def purge(conn: AsyncConnection, slug: str) -> TenantInfo:
    tenant = await get_tenant(conn, slug)
    await conn.execute(text(f"DROP SCHEMA IF EXISTS {_quote(conn, tenant.location)} CASCADE"))
    await conn.execute(delete(TenantRow).where(TenantRow.id == tenant.id))
    await drop_role(conn, tenant.role)
    return tenant


async def rename(conn: AsyncConnection, slug: str, name: str) -> TenantInfo:
    name = display_name(name)
    tenant = await get_tenant(conn, slug)
    await conn.execute(update(TenantRow).where(TenantRow.id == tenant.id).values(name=name))
    return await get_tenant(conn, slug)
