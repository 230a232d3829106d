"""Tenants for the fleet's tests: made in numbers, entered in a transaction, their revisions
read from their own version tables."""

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tenantsvc.tenancy.provisioning import create_tenant
from tenantsvc.tenancy.revisions import read_revisions


async def make_tenants(engine: AsyncEngine, count: int, prefix: str) -> list[str]:
    """``count`` tenants, ``<prefix>000`` on; their schemas."""
    return [(await create_tenant(engine, f"{prefix}{i:03d}")).schema for i in range(count)]


async def enter(conn: AsyncConnection, schema: str) -> None:
    """The tenant's transaction-local search_path, as requests have it."""
    await conn.execute(text("SELECT set_config('search_path', :s, true)"), {"s": schema})


async def revisions_of(engine: AsyncEngine, schemas: list[str]) -> dict[str, str | None]:
    async with engine.connect() as conn:
        return await conn.run_sync(read_revisions, schemas)
