"""Archive, restore, purge and rename: each one transaction over schema and registry row.

Archiving renames the schema out of the way (``archived_<id>_<slug>``) and marks the row
archived: workers stop serving it within one registry poll, and even a stale worker would
find no tables under the old name rather than serve archived data. Restoring renames it back,
every row intact. Purging drops the schema and the row for good.

An archived schema stays at the revision it had: ``migrate-all`` passes it by. So a tenant
restored after the fleet moved on comes back unserved (``provisioning``), is migrated to head,
and only then served (``restore_at_head``), as an import from an older export is: served
at its old revision, it met code written for tables it did not have.
"""

from dataclasses import dataclass, replace

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tenantsvc.tenancy.admin import TenantInfo, get_tenant, revision_and_head, set_status
from tenantsvc.tenancy.errors import TenancyError
from tenantsvc.tenancy.locking import LOCK_CLASS, LockPolicy, LocksNotGranted, slug_lock
from tenantsvc.tenancy.models import TenantRow, TenantStatus
from tenantsvc.tenancy.roles import drop_role
from tenantsvc.tenancy.slugs import display_name


def _quote(conn: AsyncConnection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote_identifier(name)


async def _rename_schema(conn: AsyncConnection, old: str, new: str) -> None:
    await conn.execute(text(f"ALTER SCHEMA {_quote(conn, old)} RENAME TO {_quote(conn, new)}"))


async def _no_migration_running(conn: AsyncConnection, tenant: TenantInfo) -> None:
    """Archive, restore and purge move or drop the schema a migration of the tenant works in:
    not while one runs (it holds the tenant's advisory lock, ``tenant_migration.py``), and
    none starts until they commit. A concurrent index build cut off midway would leave the
    schema between two revisions."""
    held = select(func.pg_try_advisory_xact_lock(LOCK_CLASS, tenant.id))
    if not await conn.scalar(held):
        raise TenancyError(f"tenant {tenant.slug!r} is being migrated: try again once that is done")


async def archive(conn: AsyncConnection, slug: str) -> TenantInfo:
    tenant = await get_tenant(conn, slug)
    await _no_migration_running(conn, tenant)
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


async def restore(conn: AsyncConnection, slug: str) -> tuple[TenantInfo, str | None]:
    """The schema back under its name, and the revision it is at: served at once when that is
    head, else left ``provisioning`` for ``restore_at_head`` to migrate."""
    tenant = await get_tenant(conn, slug)
    if tenant.status != TenantStatus.ARCHIVED or tenant.archived_schema is None:
        raise TenancyError(f"tenant {slug!r} is not archived (it is {tenant.status})")
    await _no_migration_running(conn, tenant)
    await _rename_schema(conn, tenant.archived_schema, tenant.schema)
    revision, head = await revision_and_head(conn, tenant.schema)
    status = TenantStatus.ACTIVE if revision == head else TenantStatus.PROVISIONING
    await conn.execute(
        update(TenantRow)
        .where(TenantRow.id == tenant.id)
        .values(status=status, archived_schema=None)
    )
    return await get_tenant(conn, slug), revision


@dataclass(frozen=True)
class Restored:
    tenant: TenantInfo
    revision: str | None  # the schema's when it was archived
    behind: bool  # that was not head: it was migrated, or tried
    error: str | None  # why migrating it to head failed (it is not served then)


async def restore_at_head(engine: AsyncEngine, slug: str) -> Restored:
    """``restore``, then the schema migrated to head and the tenant served, when it is behind."""
    async with engine.begin() as conn:
        tenant, revision = await restore(conn, slug)
    behind, error = tenant.status == TenantStatus.PROVISIONING, None
    if behind:
        tenant, error = await serve_at_head(engine, tenant, revision)
    return Restored(tenant, revision, behind, error)


async def serve_at_head(
    engine: AsyncEngine, tenant: TenantInfo, revision: str | None
) -> tuple[TenantInfo, str | None]:
    """A tenant held back from service (``provisioning``) at ``revision``: migrated to head,
    then served. Returns it as it is left, and why it could not be migrated, if so: then it
    stays unserved (``tenantctl migrate``, then ``tenantctl resume``)."""
    from tenantsvc.tenancy.migrator import head
    from tenantsvc.tenancy.tenant_migration import FleetTenant, migrate_tenant

    moved = await migrate_tenant(
        engine, FleetTenant(tenant.id, tenant.slug, tenant.schema), revision, head("tenant")
    )
    if moved.error is None:
        async with engine.begin() as conn:
            tenant = await set_status(conn, tenant.slug, TenantStatus.ACTIVE)
    return tenant, moved.error


async def purge(conn: AsyncConnection, slug: str) -> TenantInfo:
    """The tenant as it was, but for ``role``: the role left behind, if one was (another
    database's, or held in one: ``roles.drop_role``); None once it is dropped."""
    await conn.execute(slug_lock(slug))  # a create of the slug waits, then counts this purge
    tenant = await get_tenant(conn, slug)
    await _no_migration_running(conn, tenant)
    await conn.execute(text(f"DROP SCHEMA IF EXISTS {_quote(conn, tenant.location)} CASCADE"))
    await conn.execute(delete(TenantRow).where(TenantRow.id == tenant.id))
    return replace(tenant, role=await drop_role(conn, tenant.role))


async def purge_when_free(engine: AsyncEngine, slug: str, policy: LockPolicy) -> TenantInfo:
    """``purge``, waiting for the tenant's tables as a migration does: at most
    ``lock_timeout_ms`` a try, ``retries`` more tries, then an error that says why. DROP SCHEMA
    waits for every transaction that holds one of them (a report, a psql session left open).
    It waited up to the statement timeout (30 s), with every request of the tenant queued
    behind it, and then said only "canceling statement due to statement timeout"."""

    async def attempt() -> TenantInfo:
        async with engine.begin() as conn:
            await conn.execute(text(policy.lock_timeout_sql()))
            return await purge(conn, slug)

    try:
        return await policy.retrying(attempt)
    except LocksNotGranted as exc:
        raise TenancyError(f"tenant {slug!r} not purged: {policy.gave_up(exc, 'it')}") from None


async def rename(conn: AsyncConnection, slug: str, name: str) -> TenantInfo:
    name = display_name(name)
    tenant = await get_tenant(conn, slug)
    await conn.execute(update(TenantRow).where(TenantRow.id == tenant.id).values(name=name))
    return await get_tenant(conn, slug)
