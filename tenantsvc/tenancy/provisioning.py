"""Creating a tenant: schema, tables at head, registry row and a first API key, atomically.

Everything happens in one transaction (PostgreSQL DDL is transactional), so a failure or a
killed process leaves nothing behind: no schema, no row, no key; re-running the same command
then simply creates the tenant. The tables are built from the tenant track's head rendered
once per process (see ``migrator``), sent in one round trip: the result is the same catalog a
step-by-step migration gives (tested), at about the cost of the DDL itself.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.schema import CreateSchema

from tenantsvc.settings import get_settings
from tenantsvc.tenancy import keys
from tenantsvc.tenancy.ddl import run_script
from tenantsvc.tenancy.errors import TenancyError, TenantExistsError
from tenantsvc.tenancy.locking import slug_lock
from tenantsvc.tenancy.migrator import build_script, head
from tenantsvc.tenancy.models import TenantEventRow, TenantRow, TenantStatus
from tenantsvc.tenancy.roles import give_role
from tenantsvc.tenancy.slugs import display_name, schema_for

_REGISTER = text(
    """
    WITH tenant AS (
        INSERT INTO tenantsvc.tenants (slug, name, schema_name, status)
        VALUES (:slug, :name, :schema, :status) RETURNING id
    ), revision AS (
        INSERT INTO tenantsvc.tenant_revisions (tenant_id, revision)
        SELECT id, :revision FROM tenant
    )
    INSERT INTO tenantsvc.api_keys (tenant_id, key_hash, prefix)
    SELECT id, :key_hash, :prefix FROM tenant RETURNING id, tenant_id
    """
)


@dataclass(frozen=True)
class NewTenant:
    slug: str
    name: str
    schema: str
    status: str
    api_key: str
    key_id: int
    role: str | None = None  # its own database role (roles.py)


# Fills a new tenant's tables inside its creating transaction: (asyncpg connection, schema).
Fill = Callable[[Any, str], Awaitable[None]]


async def _build(
    conn: AsyncConnection,
    slug: str,
    name: str,
    schema: str,
    revision: str,
    fill: Fill | None,
    with_role: bool,
) -> NewTenant:
    found = await _status_of(conn, slug)
    if found is not None:
        raise TenantExistsError(slug, found)
    await conn.execute(CreateSchema(schema))
    await run_script(conn, schema, await build_script(revision))
    if fill is not None:
        await fill((await conn.get_raw_connection()).driver_connection, schema)
    # Behind head, it is not served until it has migrated (``dumps.import_tenant``).
    status = TenantStatus.ACTIVE if revision == head("tenant") else TenantStatus.PROVISIONING
    key, key_params = keys.new_key_row()
    params = {"slug": slug, "name": name, "schema": schema, "status": status,
              "revision": revision}  # fmt: skip
    key_id, tenant_id = (await conn.execute(_REGISTER, {**params, **key_params})).one()
    role = await give_role(conn, tenant_id) if with_role else None
    return NewTenant(slug, name, schema, status, key, int(key_id), role)


async def create_tenant(
    engine: AsyncEngine,
    slug: str,
    name: str | None = None,
    *,
    revision: str | None = None,
    fill: Fill | None = None,
    with_role: bool | None = None,
) -> NewTenant:
    """At head unless ``revision`` says otherwise; ``fill`` loads rows before the commit; with
    its own database role unless ``with_role`` (default: ``TENANTSVC_TENANT_ROLES``) says no."""
    # The slug and name checked before any connection; the schema name is the slug's first
    # until ``unused_schema`` counts the purges before it.
    schema, display = schema_for(slug), display_name(slug if name is None else name)
    role = get_settings().tenant_roles if with_role is None else with_role
    try:
        async with engine.begin() as conn:
            schema = await unused_schema(conn, slug)
            return await _build(conn, slug, display, schema, revision or head("tenant"), fill, role)
    except (IntegrityError, ProgrammingError) as exc:
        # A concurrent create of the same slug, or a leftover schema or role of that name.
        if "already exists" in str(exc) or "duplicate key" in str(exc):
            raise await _taken(engine, slug, schema) from exc
        raise


async def unused_schema(conn: AsyncConnection, slug: str) -> str:
    """The new tenant's schema name: one that no tenant of this slug had before.

    A purged tenant's slug may be taken again. Were its schema name reused, a worker whose
    registry snapshot predates the purge (for up to one poll) would serve the old tenant's key
    on the new tenant's tables, and so would a replica that has not replayed the purge: with
    tenant roles off, nothing else tells the two apart. The slug's lock, which ``purge`` takes
    too, makes this count see every purge committed before it."""
    await conn.execute(slug_lock(slug))
    purged = await conn.scalar(
        select(func.count())
        .select_from(TenantEventRow)
        .where(TenantEventRow.slug == slug, TenantEventRow.action == "purged")
    )
    return schema_for(slug, 1 + (purged or 0))


async def _status_of(conn: AsyncConnection, slug: str) -> str | None:
    """The slug's tenant's status; None while no tenant has the slug."""
    return await conn.scalar(select(TenantRow.status).where(TenantRow.slug == slug))


async def _taken(engine: AsyncEngine, slug: str, schema: str) -> TenancyError:
    """Why the slug's names were taken: a tenant registered meanwhile (a concurrent create),
    or a schema no tenant owns, which "tenant already exists" sent the operator looking for
    in `tenantctl list` in vain."""
    async with engine.connect() as conn:
        registered = await _status_of(conn, slug)
        leftover = await conn.scalar(select(func.to_regnamespace(schema)))
    if registered is not None or leftover is None:
        return TenantExistsError(slug, registered)
    return TenancyError(
        f"schema {schema} exists, but no tenant {slug!r} is registered: left by something "
        f"other than tenantctl. Look at what it holds, then drop it (DROP SCHEMA {schema} "
        "CASCADE) or choose another slug"
    )
