"""Creating a tenant: registry row, schema, tables at head and a first API key, atomically.

Everything happens in one transaction (PostgreSQL DDL is transactional), so a failure or a
killed process leaves nothing behind: no schema, no row, no key.
"""

from dataclasses import dataclass

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.schema import CreateSchema

from tenantsvc.tenancy import keys
from tenantsvc.tenancy.errors import TenantExistsError
from tenantsvc.tenancy.migrator import upgrade_tenant
from tenantsvc.tenancy.models import ApiKeyRow, TenantRow, TenantStatus
from tenantsvc.tenancy.slugs import schema_for


@dataclass(frozen=True)
class NewTenant:
    slug: str
    name: str
    schema: str
    status: str
    api_key: str
    key_id: int


async def issue_key(conn: AsyncConnection, tenant_id: int) -> tuple[int, str]:
    """A new API key for the tenant: (key id, the key itself, shown once)."""
    key = keys.new_key()
    key_id = await conn.scalar(
        insert(ApiKeyRow)
        .values(tenant_id=tenant_id, key_hash=keys.hash_key(key), prefix=keys.display_prefix(key))
        .returning(ApiKeyRow.id)
    )
    assert key_id is not None
    return key_id, key


async def _build(conn: AsyncConnection, slug: str, name: str, schema: str) -> NewTenant:
    if await conn.scalar(select(TenantRow.id).where(TenantRow.slug == slug)) is not None:
        raise TenantExistsError(slug)
    await conn.execute(CreateSchema(schema))
    await conn.run_sync(upgrade_tenant, schema)
    tenant_id = await conn.scalar(
        insert(TenantRow)
        .values(slug=slug, name=name, schema_name=schema, status=TenantStatus.ACTIVE)
        .returning(TenantRow.id)
    )
    assert tenant_id is not None
    key_id, key = await issue_key(conn, tenant_id)
    return NewTenant(slug, name, schema, TenantStatus.ACTIVE, key, key_id)


async def create_tenant(engine: AsyncEngine, slug: str, name: str | None = None) -> NewTenant:
    schema = schema_for(slug)
    try:
        async with engine.begin() as conn:
            return await _build(conn, slug, name or slug, schema)
    except (IntegrityError, ProgrammingError) as exc:
        # A concurrent create of the same slug, or a leftover schema of that name.
        if "already exists" in str(exc) or "duplicate key" in str(exc):
            raise TenantExistsError(slug) from exc
        raise
