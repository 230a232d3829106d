"""One tenant cannot take the pool (db/fairness.py): its requests beyond its cap queue by
themselves, and the other tenants are served meanwhile."""

import asyncio

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantsvc.db.fairness import TenantBusyError, TenantSlots
from tenantsvc.settings import Settings
from tenantsvc.testing.app import running_app
from tests.conftest import TenantFactory, TenantHandle, make_settings
from tests.polling import until, until_waiting


async def test_places_pass_in_order_within_each_tenant_and_leave_nothing_behind() -> None:
    slots, order = TenantSlots(limit=2, wait_seconds=5), []

    async def request(tenant: str, n: int, hold: asyncio.Event) -> None:
        await slots.acquire(tenant)
        order.append((tenant, n))
        await hold.wait()
        slots.release(tenant)

    hold = asyncio.Event()
    tasks = [asyncio.create_task(request("a", n, hold)) for n in range(5)]
    await asyncio.sleep(0.01)
    assert order == [("a", 0), ("a", 1)]  # a's other three wait in a's queue
    await slots.acquire("b")  # another tenant is not behind them
    slots.release("b")
    hold.set()
    await asyncio.gather(*tasks)
    assert order == [("a", n) for n in range(5)]  # first come, first served
    assert (slots._held, slots._queues) == ({}, {})


async def test_a_wait_past_its_limit_is_busy_and_gives_its_place_up() -> None:
    slots = TenantSlots(limit=1, wait_seconds=0.05)
    await slots.acquire("a")
    with pytest.raises(TenantBusyError):
        await slots.acquire("a")
    cancelled = asyncio.create_task(slots.acquire("a"))
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    slots.release("a")  # nobody is waiting any more: the place is free
    assert slots.held("a") == 0
    assert (slots._held, slots._queues) == ({}, {})
    await slots.acquire("a")  # and can be taken at once


async def test_no_cap_when_the_limit_is_zero() -> None:
    slots = TenantSlots(limit=0, wait_seconds=0.01)
    for _ in range(100):
        await slots.acquire("a")
    assert slots.held("a") == 100


def test_the_default_cap_leaves_a_quarter_of_the_connections_to_the_others() -> None:
    assert Settings(pool_size=20, max_overflow=10).tenant_connection_cap == 22
    assert Settings(pool_size=1, max_overflow=0).tenant_connection_cap == 1
    assert Settings(tenant_max_connections=0).tenant_connection_cap == 0


async def test_a_tenant_stuck_on_its_own_lock_does_not_take_the_pool(
    database_url: str, engine: AsyncEngine, tenant_factory: TenantFactory
) -> None:
    """Tenant A's requests all block behind a lock in A's schema, each holding a connection
    while it waits. Four connections in the pool, A may hold two: B is served meanwhile."""
    noisy, quiet = await tenant_factory(), await tenant_factory()
    settings = make_settings(database_url, pool_size=4, max_overflow=0, pool_timeout_seconds=1,
                             statement_timeout_ms=1500, tenant_max_connections=2)  # fmt: skip
    lock = text(f"LOCK TABLE {noisy.schema}.products IN ACCESS EXCLUSIVE MODE")
    async with running_app(settings) as running:
        client = running.client
        async with engine.connect() as locker, locker.begin():
            await locker.execute(lock)
            stuck = [asyncio.create_task(_list(client, noisy)) for _ in range(6)]

            async def noisy_holds_its_cap() -> bool:
                held: int = running.state["db"].slots.held(noisy.schema)
                return held == 2  # the other 4 queue

            await until(noisy_holds_its_cap, "tenant A never took its two places")
            products = f"{noisy.schema}.products"
            await until_waiting(engine, products, "tenant A's two never waited", count=2)
            served = await _list(client, quiet)
            assert served.status_code == 200, served.text
            assert await noisy_holds_its_cap()  # still: B was served beside them
        answers = await asyncio.gather(*stuck)  # the lock is gone: A's queue drains
        # Stuck for good: A's two in progress end with the statement timeout (503), the one
        # queued behind them with a 429 once it waited as long as a pool checkout may.
        async with engine.connect() as locker, locker.begin():
            await locker.execute(lock)
            late = await asyncio.gather(*(_list(client, noisy) for _ in range(3)))
    assert [a.status_code for a in answers] == [200] * 6
    assert sorted(a.status_code for a in late) == [429, 503, 503]
    busy = next(a for a in late if a.status_code == 429)
    assert busy.headers["retry-after"] == "1"
    assert busy.json()["title"] == "Too many requests"


async def _list(client: httpx.AsyncClient, tenant: TenantHandle) -> httpx.Response:
    return await client.get("/products", headers=tenant.headers)
