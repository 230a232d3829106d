"""When each API key was last used: recorded for accepted requests only, once per flush, and
never at the price of a registry reload."""

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantsvc.tenancy.admin import KeyInfo, create_key, list_keys
from tenantsvc.tenancy.key_usage import KeyUsage
from tenantsvc.tenancy.provisioning import create_tenant
from tenantsvc.testing.app import start_app, stop_app
from tests.conftest import Running, TenantHandle, make_settings


async def _keys(engine: AsyncEngine, slug: str) -> list[KeyInfo]:
    async with engine.connect() as conn:
        return await list_keys(conn, slug)


def _recent(when: datetime | None) -> bool:
    return when is not None and datetime.now(UTC) - when < timedelta(minutes=1)


async def _version(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text("SELECT version FROM tenantsvc.registry_state")))


async def test_accepted_keys_are_recorded_refused_ones_are_not(
    client: httpx.AsyncClient,
    running: Running,
    engine: AsyncEngine,
    tenant_a: TenantHandle,
    tenant_b: TenantHandle,
) -> None:
    async with engine.begin() as conn:
        await create_key(conn, tenant_a.slug)  # never sent
    await running.state["registry"].refresh()
    crossed = {"X-Tenant-ID": tenant_a.slug, "Authorization": f"Bearer {tenant_b.api_key}"}
    assert (await client.get("/products", headers=crossed)).status_code == 403
    assert (await client.get("/products", headers=tenant_a.headers)).status_code == 200
    version = await _version(engine)
    await running.state["key_usage"].flush()

    used, unused = await _keys(engine, tenant_a.slug)
    assert used.last_used_at is not None
    assert _recent(used.last_used_at)
    assert unused.last_used_at is None
    assert used.as_json()["last_used_at"] == used.last_used_at.isoformat()
    [other] = await _keys(engine, tenant_b.slug)
    assert other.last_used_at is None  # presented for the wrong tenant: not a use
    assert await _version(engine) == version  # no worker reloads its snapshot for it


async def test_a_remembered_pair_is_recorded_too(
    client: httpx.AsyncClient, running: Running, engine: AsyncEngine, tenant_a: TenantHandle
) -> None:
    """The second request skips verification (the memo of verified pairs): still a use."""
    assert (await client.get("/products", headers=tenant_a.headers)).status_code == 200
    await running.state["key_usage"].flush()
    [key] = await _keys(engine, tenant_a.slug)
    async with engine.begin() as conn:
        await conn.execute(text(
            "UPDATE tenantsvc.api_key_usage SET last_used_at = '2000-01-01' WHERE key_id = :id"
        ), {"id": key.id})  # fmt: skip
    assert (await client.get("/products", headers=tenant_a.headers)).status_code == 200
    await running.state["key_usage"].flush()
    [key] = await _keys(engine, tenant_a.slug)
    assert _recent(key.last_used_at)


async def test_a_failed_flush_keeps_its_keys_and_a_deleted_key_is_skipped(
    fresh_engine: AsyncEngine,
) -> None:
    await create_tenant(fresh_engine, "keyed")
    async with fresh_engine.begin() as conn:
        gone, _ = await create_key(conn, "keyed")
        await conn.execute(text("DELETE FROM tenantsvc.api_keys WHERE id = :id"), {"id": gone})
    [kept] = await _keys(fresh_engine, "keyed")
    usage = KeyUsage(fresh_engine, flush_seconds=3600)
    usage.used(kept.id)
    usage.used(gone)  # seen, then deleted (a purge) before the flush
    async with fresh_engine.begin() as conn:
        await conn.execute(text("ALTER TABLE tenantsvc.api_key_usage RENAME TO away"))
    with pytest.raises(Exception, match="api_key_usage"):
        await usage.flush()
    async with fresh_engine.begin() as conn:
        await conn.execute(text("ALTER TABLE tenantsvc.away RENAME TO api_key_usage"))
    assert await usage.flush() == 2
    [recorded] = await _keys(fresh_engine, "keyed")
    assert _recent(recorded.last_used_at)
    assert await usage.flush() == 0


async def test_the_last_uses_are_written_at_shutdown(
    database_url: str, engine: AsyncEngine, tenant_a: TenantHandle
) -> None:
    manager, running = await start_app(make_settings(database_url, key_usage_flush_seconds=3600))
    try:
        response = await running.client.get("/products", headers=tenant_a.headers)
        assert response.status_code == 200
    finally:
        await stop_app(manager, running)
    [key] = await _keys(engine, tenant_a.slug)
    assert _recent(key.last_used_at)
