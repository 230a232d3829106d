"""API keys that expire: refused within a registry poll of their expiry on every worker,
though the requests' path checks no clock and no row changes when a key expires."""

import asyncio
from datetime import timedelta

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantsvc.tenancy import fleet
from tenantsvc.tenancy.admin import create_key, list_keys
from tenantsvc.tenancy.provisioning import create_tenant
from tests.conftest import TenantHandle
from tests.polling import until
from tests.tenancy.revisions import shared_down_to


async def test_an_expired_key_is_refused_within_a_poll(
    client: httpx.AsyncClient, engine: AsyncEngine, tenant_a: TenantHandle
) -> None:
    async with engine.begin() as conn:
        _, key = await create_key(conn, tenant_a.slug, timedelta(seconds=1))
    headers = {"X-Tenant-ID": tenant_a.slug, "Authorization": f"Bearer {key}"}

    async def answered(status: int) -> bool:
        return (await client.get("/products", headers=headers)).status_code == status

    await until(lambda: answered(200), "the new key was never accepted", seconds=5)
    await until(lambda: answered(401), "the key outlived its expiry", seconds=5)
    assert (await client.get("/products", headers=tenant_a.headers)).status_code == 200
    async with engine.connect() as conn:
        [first, expiring] = await list_keys(conn, tenant_a.slug)
    assert first.expires_at is None
    assert expiring.expires_at is not None
    assert expiring.as_json()["expires_at"] == expiring.expires_at.isoformat()


async def test_a_shared_downgrade_revokes_the_expired_keys(fresh_engine: AsyncEngine) -> None:
    """Without the column they would be valid again."""
    await create_tenant(fresh_engine, "keyed")
    async with fresh_engine.begin() as conn:
        expired, _ = await create_key(conn, "keyed", timedelta(seconds=0.2))
        lasting, _ = await create_key(conn, "keyed", timedelta(days=1))
    await asyncio.sleep(0.3)
    async with fresh_engine.begin() as conn:
        await conn.run_sync(shared_down_to, "s0004")
        revoked: dict[int, bool] = dict((await conn.execute(text(
            "SELECT id, revoked_at IS NOT NULL FROM tenantsvc.api_keys"
        ))).all())  # fmt: skip
    assert (revoked[expired], revoked[lasting]) == (True, False)
    await fleet.migrate_shared(fresh_engine)
