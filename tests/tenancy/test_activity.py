"""What the workers served: each API key's last use and each tenant's requests per day,
recorded for accepted requests only, once per flush, never at the price of a registry reload."""

import asyncio
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tenantsvc.tenancy.activity import Activity
from tenantsvc.tenancy.admin import KeyInfo, TenantInfo, create_key, get_tenant, list_keys
from tenantsvc.tenancy.provisioning import create_tenant
from tenantsvc.tenancy.usage import DayRequests, daily_requests, tenant_usage
from tenantsvc.testing.app import start_app, stop_app
from tests.conftest import Running, TenantHandle, make_settings
from tests.polling import until_waiting


async def _keys(engine: AsyncEngine, slug: str) -> list[KeyInfo]:
    async with engine.connect() as conn:
        return await list_keys(conn, slug)


def _recent(when: datetime | None) -> bool:
    return when is not None and datetime.now(UTC) - when < timedelta(minutes=1)


async def _tenant(engine: AsyncEngine, slug: str) -> TenantInfo:
    async with engine.connect() as conn:
        return await get_tenant(conn, slug)


def _flushes(outcome: str) -> float:
    found = REGISTRY.get_sample_value("tenantsvc_activity_flushes_total", {"outcome": outcome})
    return found or 0.0


def _today() -> date:
    return datetime.now(UTC).date()


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
    await running.state["activity"].flush()

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
    await running.state["activity"].flush()
    [key] = await _keys(engine, tenant_a.slug)
    async with engine.begin() as conn:
        await conn.execute(text(
            "UPDATE tenantsvc.api_key_usage SET last_used_at = '2000-01-01' WHERE key_id = :id"
        ), {"id": key.id})  # fmt: skip
    assert (await client.get("/products", headers=tenant_a.headers)).status_code == 200
    await running.state["activity"].flush()
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
    tenant_id = (await _tenant(fresh_engine, "keyed")).id
    usage = Activity(fresh_engine, flush_seconds=3600)
    usage.served(tenant_id, kept.id, "GET")
    usage.served(tenant_id, gone, "POST")  # seen, then deleted (a purge) before the flush
    usage.served(2**62, kept.id, "GET")  # a tenant purged since
    async with fresh_engine.begin() as conn:
        await conn.execute(text("ALTER TABLE tenantsvc.api_key_usage RENAME TO away"))
    failed = _flushes("failed")
    with pytest.raises(Exception, match="api_key_usage"):
        await usage.flush()
    assert _flushes("failed") == failed + 1  # what an alert watches
    async with fresh_engine.begin() as conn:
        await conn.execute(text("ALTER TABLE tenantsvc.away RENAME TO api_key_usage"))
    assert await usage.flush() == 3  # requests
    [recorded] = await _keys(fresh_engine, "keyed")
    assert _recent(recorded.last_used_at)
    assert await usage.flush() == 0
    async with fresh_engine.connect() as conn:
        assert await daily_requests(conn, "keyed") == [DayRequests(_today(), 1, 1)]  # once


async def test_the_last_uses_are_written_at_shutdown(
    database_url: str, engine: AsyncEngine, tenant_a: TenantHandle
) -> None:
    manager, running = await start_app(make_settings(database_url, usage_flush_seconds=3600))
    try:
        response = await running.client.get("/products", headers=tenant_a.headers)
        assert response.status_code == 200
    finally:
        await stop_app(manager, running)
    [key] = await _keys(engine, tenant_a.slug)
    assert _recent(key.last_used_at)


async def test_each_tenants_requests_are_counted_per_day(
    client: httpx.AsyncClient,
    running: Running,
    engine: AsyncEngine,
    tenant_a: TenantHandle,
    tenant_b: TenantHandle,
) -> None:
    """Reads and writes its key was accepted for, whatever the answer; refused ones are not
    the tenant's."""
    await running.state["registry"].refresh()
    for path in ("/products", "/users", "/products/999999"):  # the 404 is served too
        await client.get(path, headers=tenant_a.headers)
    user = {"email": "count@me.io", "name": "Count"}
    assert (await client.post("/users", json=user, headers=tenant_a.headers)).status_code == 201
    crossed = {"X-Tenant-ID": tenant_b.slug, "Authorization": f"Bearer {tenant_a.api_key}"}
    assert (await client.get("/products", headers=crossed)).status_code == 403
    await running.state["activity"].flush()

    async with engine.connect() as conn:
        assert await daily_requests(conn, tenant_a.slug) == [DayRequests(_today(), 3, 1)]
        assert await daily_requests(conn, tenant_b.slug) == []
        busiest = await tenant_usage(conn, days=1, by="requests")
    counted = {u.slug: (u.reads, u.writes) for u in busiest}
    assert counted[tenant_a.slug] == (3, 1)
    assert counted[tenant_b.slug] == (0, 0)
    totals = [u.reads + u.writes for u in busiest]
    assert totals == sorted(totals, reverse=True)  # busiest first


async def _served_once(engine: AsyncEngine, slug: str) -> tuple[Activity, int, int]:
    """A new tenant, and a worker's activity that served it one read."""
    await create_tenant(engine, slug)
    [key] = await _keys(engine, slug)
    tenant_id = (await _tenant(engine, slug)).id
    usage = Activity(engine, flush_seconds=3600)
    usage.served(tenant_id, key.id, "GET")
    return usage, tenant_id, key.id


async def _requests_today(engine: AsyncEngine, slug: str) -> list[DayRequests]:
    async with engine.connect() as conn:
        return await daily_requests(conn, slug)


async def test_requests_count_on_the_day_they_were_served_not_the_flushs(
    fresh_engine: AsyncEngine,
) -> None:
    """A batch that straddles midnight UTC bills each request to its own day: the flush's
    time put the last seconds of a day on the next one."""
    await create_tenant(fresh_engine, "midnight")
    [key] = await _keys(fresh_engine, "midnight")
    tenant_id = (await _tenant(fresh_engine, "midnight")).id
    midnight = datetime.combine(_today(), datetime.min.time(), UTC).timestamp()
    served_at = iter([midnight - 0.1, midnight - 0.1, midnight + 0.1])
    usage = Activity(fresh_engine, flush_seconds=3600, clock=lambda: next(served_at))
    usage.served(tenant_id, key.id, "GET")
    usage.served(tenant_id, key.id, "GET")
    usage.served(tenant_id, key.id, "POST")
    assert await usage.flush() == 3  # one flush, after midnight
    yesterday = _today() - timedelta(days=1)
    assert await _requests_today(fresh_engine, "midnight") == [
        DayRequests(_today(), 0, 1),
        DayRequests(yesterday, 2, 0),
    ]


async def test_a_commit_that_went_through_unacknowledged_is_not_counted_twice(
    fresh_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection dies after the server committed, before its answer arrived: the flush
    cannot tell, so what it held stays in doubt until the next flush finds its id."""
    usage, tenant_id, key_id = await _served_once(fresh_engine, "unacked")
    real_commit = AsyncConnection.commit

    async def commit_then_lose_the_answer(self: AsyncConnection) -> None:
        await real_commit(self)
        raise ConnectionResetError("connection lost before the commit's answer")

    monkeypatch.setattr(AsyncConnection, "commit", commit_then_lose_the_answer)
    with pytest.raises(ConnectionResetError):
        await usage.flush()
    monkeypatch.undo()
    assert await _requests_today(fresh_engine, "unacked") == [DayRequests(_today(), 1, 0)]
    usage.served(tenant_id, key_id, "POST")  # served meanwhile
    assert await usage.flush() == 1  # the new request only
    assert await usage.flush() == 0
    assert await _requests_today(fresh_engine, "unacked") == [DayRequests(_today(), 1, 1)]


async def test_a_commit_the_server_refused_is_written_by_the_next_flush(
    fresh_engine: AsyncEngine,
) -> None:
    usage, _, _ = await _served_once(fresh_engine, "refused")
    async with fresh_engine.begin() as conn:
        await conn.execute(text(
            "CREATE FUNCTION tenantsvc.refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$BEGIN RAISE EXCEPTION 'refused at commit'; END$$"
        ))  # fmt: skip
        await conn.execute(text(
            "CREATE CONSTRAINT TRIGGER refuse AFTER INSERT ON tenantsvc.tenant_requests "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION tenantsvc.refuse()"
        ))  # fmt: skip
    with pytest.raises(Exception, match="refused at commit"):
        await usage.flush()
    async with fresh_engine.begin() as conn:
        await conn.execute(text("DROP FUNCTION tenantsvc.refuse() CASCADE"))
    assert await _requests_today(fresh_engine, "refused") == []
    assert await usage.flush() == 1
    assert await _requests_today(fresh_engine, "refused") == [DayRequests(_today(), 1, 0)]


async def test_a_flush_cancelled_by_shutdown_is_not_a_failure_and_loses_nothing(
    fresh_engine: AsyncEngine,
) -> None:
    usage, _, _ = await _served_once(fresh_engine, "cancelled")
    failed = _flushes("failed")
    async with fresh_engine.connect() as blocker:
        await blocker.execute(text("LOCK TABLE tenantsvc.tenant_requests"))
        flushing = asyncio.create_task(usage.flush())
        requests = "tenantsvc.tenant_requests"
        await until_waiting(fresh_engine, requests, "the flush never waited for the lock")
        assert not flushing.done()
        flushing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await flushing
        await blocker.rollback()
    assert _flushes("failed") == failed
    assert await usage.flush() == 1
    assert await _requests_today(fresh_engine, "cancelled") == [DayRequests(_today(), 1, 0)]


@pytest.mark.parametrize("went_through", [True, False])
async def test_a_last_flush_that_fails_at_shutdown_is_tried_again_and_counts_once(
    fresh_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, went_through: bool
) -> None:
    """The first commit at shutdown loses its answer, after the server committed or before it
    did: the retry settles it by the flush's id, so the request counts once either way (before
    retries, one that had not gone through was lost)."""
    slug = f"at_stop_{str(went_through).lower()}"
    usage, _, _ = await _served_once(fresh_engine, slug)
    real_commit = AsyncConnection.commit
    commits = 0

    async def lose_the_first_answer(self: AsyncConnection) -> None:
        nonlocal commits
        commits += 1
        if commits == 1 and not went_through:
            await self.invalidate()  # the connection dies before the commit is sent
            raise ConnectionResetError("connection lost while committing")
        await real_commit(self)
        if commits == 1:
            raise ConnectionResetError("connection lost before the commit's answer")

    monkeypatch.setattr(AsyncConnection, "commit", lose_the_first_answer)
    await usage.stop()
    assert commits == 2
    assert await _requests_today(fresh_engine, slug) == [DayRequests(_today(), 1, 0)]
