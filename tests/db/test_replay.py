"""Requests the database refused and rolled back are served again (tenant_routes.py): statements
a migration made stale, and a deadlock. Each case failed before the replay."""

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantsvc.db import stale
from tenantsvc.db.stale import is_replayable, is_stale_statement
from tenantsvc.testing.app import running_app
from tests.conftest import Running, TenantHandle, make_settings
from tests.polling import until_sql
from tests.tenancy.fleet_tenants import enter


async def _post(client: httpx.AsyncClient, t: TenantHandle, path: str, body: Any) -> Any:
    response = await client.post(path, json=body, headers=t.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def _buyer_and_product(
    client: httpx.AsyncClient, t: TenantHandle
) -> tuple[int, int, dict[str, Any]]:
    """A user, a product with 9 in stock, and the body of an order of one unit."""
    user = (await _post(client, t, "/users", {"email": "r@x.io", "name": "R"}))["id"]
    body = {"name": "p", "price_cents": 5, "stock": 9}
    product = (await _post(client, t, "/products", body))["id"]
    return user, product, {"user_id": user, "items": [{"product_id": product, "quantity": 1}]}


@pytest.fixture
async def one_connection(database_url: str, tenant_a: TenantHandle) -> AsyncIterator[Running]:
    """An app whose pool is one connection: every request uses the statements it prepared."""
    async with running_app(make_settings(database_url, pool_size=1, max_overflow=0)) as running:
        yield running


async def test_every_route_serves_through_a_migration_that_changes_what_it_returns(
    one_connection: Running, engine: AsyncEngine, tenant_a: TenantHandle
) -> None:
    client = one_connection.client
    user, product, order = await _buyer_and_product(client, tenant_a)
    hot, orm = ["/products?limit=5"], [f"/products/{product}", f"/users/{user}",
                                      f"/users/{user}/orders"]  # fmt: skip

    async def serve_all(reads: list[str]) -> list[int]:
        statuses = [(await client.get(p, headers=tenant_a.headers)).status_code for p in reads]
        placed = await client.post("/orders", json=order, headers=tenant_a.headers)
        return [*statuses, placed.status_code]

    assert await serve_all(hot + orm) == [200, 200, 200, 200, 201]  # every statement cached
    # Twice: names widened, an ORM route first to meet the stale statements (the hot read
    # returns name as text, unchanged); then stock made bigint, the hot read first.
    widen = [f"ALTER TABLE {t} ALTER name TYPE varchar(300)" for t in ("products", "users")]
    bigger = ["ALTER TABLE products ALTER stock TYPE bigint"]
    for migration, reads in ((widen, orm + hot), (bigger, hot + orm)):
        replays = _replays("stale_statement")
        async with engine.begin() as conn:
            await enter(conn, tenant_a.schema)
            for statement in migration:
                await conn.execute(text(statement))
        assert await serve_all(reads) == [200, 200, 200, 200, 201]
        assert _replays("stale_statement") > replays  # counted for the operators
    stock = await client.get(f"/products/{product}", headers=tenant_a.headers)
    assert stock.json()["stock"] == 6  # three orders, each taken once


async def test_the_hot_read_survives_widened_names_without_a_replay(
    one_connection: Running, engine: AsyncEngine, tenant_a: TenantHandle
) -> None:
    """It returns name as text, so its prepared statement does not go stale (queries.py)."""
    client = one_connection.client
    await _buyer_and_product(client, tenant_a)
    assert (await client.get("/products", headers=tenant_a.headers)).status_code == 200
    replays = _replays("stale_statement")
    async with engine.begin() as conn:
        await enter(conn, tenant_a.schema)
        await conn.execute(text("ALTER TABLE products ALTER name TYPE varchar(300)"))
    page = await client.get("/products", headers=tenant_a.headers)
    assert page.status_code == 200
    assert page.json()["items"][0]["name"] == "p"
    assert _replays("stale_statement") == replays


async def test_an_order_chosen_as_a_deadlock_victim_is_placed_once(
    client: httpx.AsyncClient, engine: AsyncEngine, tenant_a: TenantHandle
) -> None:
    user, product, order = await _buyer_and_product(client, tenant_a)
    replays = _replays("deadlock_or_conflict")
    async with engine.connect() as other, other.begin():
        # Another transaction locks the buyer, then (below) wants the product: the order locks
        # the product first, then waits for the buyer (its foreign-key check). PostgreSQL ends
        # the cycle by rolling back whoever waited first: the order.
        await enter(other, tenant_a.schema)
        await other.execute(text("SELECT 1 FROM users WHERE id = :u FOR UPDATE"), {"u": user})
        placing = asyncio.create_task(client.post("/orders", json=order, headers=tenant_a.headers))
        await _until_one_waits(engine)
        await other.execute(text("UPDATE products SET name = 'q' WHERE id = :p"), {"p": product})
    response = await placing
    assert response.status_code == 201, response.text
    assert _replays("deadlock_or_conflict") == replays + 1
    orders = await client.get(f"/users/{user}/orders", headers=tenant_a.headers)
    assert len(orders.json()["items"]) == 1
    stock = await client.get(f"/products/{product}", headers=tenant_a.headers)
    assert stock.json()["stock"] == 8


async def _until_one_waits(engine: AsyncEngine) -> None:
    waiting = "SELECT count(*) FROM pg_locks WHERE NOT granted"
    await until_sql(engine, waiting, "the order never waited for the buyer's lock")


def _replays(reason: str) -> float:
    return REGISTRY.get_sample_value("tenantsvc_replays_total", {"reason": reason}) or 0.0


def test_only_refusals_that_rolled_back_are_replayable() -> None:
    class Coded(Exception):
        def __init__(self, sqlstate: str) -> None:
            self.sqlstate = sqlstate

    import asyncpg

    stale = asyncpg.InvalidCachedStatementError("cached statement plan is invalid")
    assert is_stale_statement(stale) and is_replayable(stale)  # noqa: PT018
    assert is_replayable(Coded("40P01")) and is_replayable(Coded("40001"))  # noqa: PT018
    for other in ("23505", "57014", "40002", "55P03"):
        assert not is_replayable(Coded(other))


def test_statements_are_marked_stale_at_most_once_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(stale, "_stale_since", 0.0)
    connection: dict[str, float] = {}
    assert not stale.is_stale(connection)  # nothing marked yet: no lookup, nothing to drop
    stale.mark_stale()
    assert stale.is_stale(connection)
    connection[stale._FRESH_AS_OF] = clock[0] + 0.1  # dropped its statements since
    clock[0] += 0.5
    stale.mark_stale()  # a second error within the second: no new mark
    assert not stale.is_stale(connection)
    clock[0] += 0.6
    stale.mark_stale()
    assert stale.is_stale(connection)
