"""Tenant-affine pooling (db/affinity.py): a tenant comes back to its home connection, a busy
home never blocks a tenant while another connection idles (past the home wait), the pool's
bookkeeping survives connections coming and going, and operators can see the hit rate."""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import AsyncAdaptedQueuePool

from tenantsvc.db.affinity import AffinityPool, _Slots, at_home, jump_hash, tenant_hash
from tenantsvc.db.engine import create_engine, pool_class
from tenantsvc.db.session import pooled_connection
from tenantsvc.settings import Settings
from tenantsvc.testing.app import SCRAPE, pool_checkouts
from tests.conftest import TenantHandle, make_settings

POOL = 4
SCHEMAS = [f"tenant_aff{i}" for i in range(12)]


def test_jump_hash_moves_few_tenants_when_the_pool_grows() -> None:
    keys = [tenant_hash(f"tenant_t{i:05d}") for i in range(10_000)]
    for n in (1, 4, 16, 19):
        homes = [jump_hash(k, n) for k in keys]
        assert set(homes) == set(range(n))
        assert max(homes.count(b) for b in range(n)) < 1.2 * len(keys) / n  # balanced
        moved = sum(h != jump_hash(k, n + 1) for h, k in zip(homes, keys, strict=True))
        assert moved < 1.3 * len(keys) / (n + 1)  # only the new connection's share moves


def test_slots_stay_dense_when_a_connection_is_dropped() -> None:
    slots, records = _Slots(), [object() for _ in range(4)]
    assert [slots.of(r) for r in records] == [0, 1, 2, 3]  # type: ignore[arg-type]
    slots.drop(records[1])  # type: ignore[arg-type]
    assert (len(slots), slots.of(records[3])) == (3, 1)  # type: ignore[arg-type]
    slots.drop(records[3])  # type: ignore[arg-type]
    slots.drop(records[3])  # type: ignore[arg-type]  # twice: no effect
    assert [slots.of(r) for r in (records[0], records[2])] == [0, 1]  # type: ignore[arg-type]
    assert slots.of(object()) == 2  # type: ignore[arg-type]


def test_affinity_is_off_behind_pgbouncer_or_when_turned_off() -> None:
    url = "postgresql+asyncpg://u@h/d"
    assert issubclass(pool_class(Settings(database_url=url)), AffinityPool)
    assert pool_class(Settings(database_url=url, pgbouncer=True)) is AsyncAdaptedQueuePool
    assert pool_class(Settings(database_url=url, pool_affinity=False)) is AsyncAdaptedQueuePool


@asynccontextmanager
async def affine_engine(database_url: str, home_wait_ms: float) -> AsyncIterator[AsyncEngine]:
    settings = make_settings(
        database_url, pool_size=POOL, max_overflow=0, pool_home_wait_ms=home_wait_ms
    )
    engine = create_engine(settings)
    try:
        async with AsyncExitStack() as stack:  # open the whole pool, so every home exists
            for _ in range(POOL):
                await stack.enter_async_context(pooled_connection(engine))
        yield engine
    finally:
        await engine.dispose()


async def backend_pid(fairy: Any) -> int:
    pid: int = await fairy.driver_connection.fetchval("SELECT pg_backend_pid()")
    return pid


async def pid_for(engine: AsyncEngine, schema: str) -> int:
    async with pooled_connection(engine, schema) as fairy:
        return await backend_pid(fairy)


async def test_a_tenant_comes_back_to_its_home_connection(database_url: str) -> None:
    async with affine_engine(database_url, home_wait_ms=0) as engine:
        first = {schema: await pid_for(engine, schema) for schema in SCHEMAS}
        for _ in range(3):  # the tenants interleaved, one after another
            again = {schema: await pid_for(engine, schema) for schema in SCHEMAS}
            assert again == first
        pool: Any = engine.sync_engine.pool
        assert isinstance(pool, AffinityPool)
        assert (pool.affinity.home, pool.affinity.warm, pool.affinity.cold) == (48, 0, 0)
    # Homes spread over the pool, as jump_hash places them.
    by_home: dict[int, set[int]] = {}
    for schema, pid in first.items():
        by_home.setdefault(jump_hash(tenant_hash(schema), POOL), set()).add(pid)
    assert all(len(pids) == 1 for pids in by_home.values())
    assert len(set(first.values())) == len(by_home) > 1


async def test_the_idle_index_matches_the_idle_connections(database_url: str) -> None:
    """The queue looks a home up in an index of its idle connections instead of scanning
    them: after concurrent checkouts of tenants and of no tenant, the two agree."""
    async with affine_engine(database_url, home_wait_ms=1) as engine:

        async def use(schema: str | None) -> None:
            async with pooled_connection(engine, schema) as fairy:
                await backend_pid(fairy)

        await asyncio.gather(*(use(SCHEMAS[i % 5] if i % 4 else None) for i in range(80)))
        queue: Any = engine.sync_engine.pool._pool._queue  # type: ignore[attr-defined]
        assert len(queue._idle) == POOL
        assert queue._idle_records == set(queue._idle)


async def test_a_busy_home_does_not_block_when_another_connection_idles(
    database_url: str,
) -> None:
    async with affine_engine(database_url, home_wait_ms=0) as engine:
        home = await pid_for(engine, SCHEMAS[0])
        async with pooled_connection(engine, SCHEMAS[0]) as held:
            assert await backend_pid(held) == home
            assert at_home(held.info)  # what the statement texts rely on
            async with pooled_connection(engine, SCHEMAS[0]) as elsewhere:
                other = await backend_pid(elsewhere)  # the home is held all along
                assert not at_home(elsewhere.info)
        assert other != home
        assert await pid_for(engine, SCHEMAS[0]) == home  # back home once it is free
        async with pooled_connection(engine) as untenanted:
            assert not at_home(untenanted.info)


async def test_a_checkout_waits_for_its_busy_home_only_briefly(database_url: str) -> None:
    async with affine_engine(database_url, home_wait_ms=300) as engine:
        home = await pid_for(engine, SCHEMAS[0])

        async def hold(seconds: float) -> None:
            async with pooled_connection(engine, SCHEMAS[0]):
                await asyncio.sleep(seconds)

        holder = asyncio.create_task(hold(0.1))
        await asyncio.sleep(0.01)
        started = time.monotonic()
        assert await pid_for(engine, SCHEMAS[0]) == home  # waited for it to come back
        assert time.monotonic() - started > 0.05
        await holder

        holder = asyncio.create_task(hold(2.0))  # held past the wait: another connection
        await asyncio.sleep(0.01)
        started = time.monotonic()
        assert await pid_for(engine, SCHEMAS[0]) != home  # the holder keeps it for 2 s
        assert time.monotonic() - started > 0.25  # after waiting the home wait
        await holder


async def test_a_warm_connection_serves_at_once_instead_of_waiting(database_url: str) -> None:
    """Waiting for the home only pays when every idle connection is cold for the tenant."""
    async with affine_engine(database_url, home_wait_ms=60_000) as engine:
        pool: Any = engine.sync_engine.pool
        home = await pid_for(engine, SCHEMAS[0])
        async with pooled_connection(engine, SCHEMAS[0]):  # the home, held
            waiting = asyncio.create_task(pid_for(engine, SCHEMAS[0]))
            await asyncio.sleep(0.1)
            assert not waiting.done()  # every other connection is cold: it waits
        assert await waiting == home

        pool._pool.home_wait = 0  # once, served elsewhere
        async with pooled_connection(engine, SCHEMAS[0]):
            elsewhere = await pid_for(engine, SCHEMAS[0])
        assert elsewhere != home
        pool._pool.home_wait = 60
        async with pooled_connection(engine, SCHEMAS[0]):
            assert await asyncio.wait_for(pid_for(engine, SCHEMAS[0]), 10) == elsewhere
        assert pool.affinity.warm == 1


async def test_a_checkout_cancelled_while_waiting_for_its_home_leaves_the_pool_whole(
    database_url: str,
) -> None:
    async with affine_engine(database_url, home_wait_ms=60_000) as engine:
        pool: Any = engine.sync_engine.pool
        home = await pid_for(engine, SCHEMAS[0])
        async with pooled_connection(engine, SCHEMAS[0]):
            waiting = asyncio.create_task(pid_for(engine, SCHEMAS[0]))
            await asyncio.sleep(0.1)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
        assert pool._pool._queue._home_waiters == {}
        assert pool.checkedout() == 0
        assert await asyncio.wait_for(pid_for(engine, SCHEMAS[0]), 10) == home
        async with AsyncExitStack() as stack:  # every connection can still be checked out
            for _ in range(POOL):
                await asyncio.wait_for(stack.enter_async_context(pooled_connection(engine)), 10)


async def test_checkouts_are_counted_in_metrics(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    assert (await client.get("/products", headers=tenant_a.headers)).status_code == 200
    found = pool_checkouts((await client.get("/metrics", headers=SCRAPE)).text)
    assert set(found) == {"home", "warm", "cold"}
