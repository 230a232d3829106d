"""The connections' server-side timeouts (db/engine.py): a transaction left idle is ended by the
server, and with it the row locks it held."""

import time
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantsvc.db.engine import create_engine
from tenantsvc.db.session import hot_begin_sql
from tenantsvc.testing.app import start_app, stop_app
from tests.conftest import TenantHandle, make_settings
from tests.polling import until_sql


async def _created(client: httpx.AsyncClient, tenant: TenantHandle, path: str, body: object) -> int:
    response = await client.post(path, json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    created: int = response.json()["id"]
    return created


async def test_a_stalled_transaction_gives_its_row_locks_up(
    client: httpx.AsyncClient, database_url: str, tenant_a: TenantHandle
) -> None:
    """A worker stalled in the middle of a transaction (a blocked event loop, a hung process)
    holds the rows it locked. With the idle timeout the server ends its session, and the orders
    waiting for those rows go through; without it they wait out their statement_timeout (30 s)
    and fail."""
    product = await _created(
        client, tenant_a, "/products", {"name": "p", "price_cents": 1, "stock": 5}
    )
    user = await _created(client, tenant_a, "/users", {"email": "idle@x.io", "name": "I"})
    order = {"user_id": user, "items": [{"product_id": product, "quantity": 1}]}
    settings = make_settings(database_url, idle_in_transaction_timeout_ms=300, pool_size=1)
    stalled_engine = create_engine(settings)
    try:
        async with stalled_engine.connect() as conn:
            stalled: Any = (await conn.get_raw_connection()).driver_connection
            await stalled.execute(hot_begin_sql(tenant_a.schema, tenant_a.role))
            pid = await stalled.fetchval("SELECT pg_backend_pid()")
            await stalled.fetch("SELECT id FROM products WHERE id = $1 FOR UPDATE", product)
            started = time.monotonic()  # the stalled transaction idles from here on
            placed = await client.post("/orders", json=order, headers=tenant_a.headers)
            waited = time.monotonic() - started
            # The server ended that session (the stalled connection itself is left alone: the
            # driver learns of it only at its next use, with whichever error it meets first).
            gone = f"SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE pid = {int(pid)})"
            await until_sql(stalled_engine, gone, "the stalled session was not ended")
    finally:
        await stalled_engine.dispose()
    assert placed.status_code == 201, placed.text
    assert 0.25 < waited < 10  # it did wait for the lock, until the server ended the session


async def test_a_statement_past_its_timeout_is_a_503_that_says_so_and_writes_nothing(
    database_url: str, engine: AsyncEngine, tenant_a: TenantHandle
) -> None:
    """A PATCH waiting for a row that a psql session holds, until the statement timeout: the
    503 said "the database is unavailable", of a database that was up all along."""
    manager, running = await start_app(make_settings(database_url, statement_timeout_ms=300))
    try:
        product = await _created(
            running.client, tenant_a, "/products", {"name": "held", "price_cents": 1, "stock": 5}
        )
        async with engine.connect() as holder:
            await holder.execute(
                text(f"SELECT 1 FROM {tenant_a.schema}.products WHERE id = :id FOR UPDATE"),
                {"id": product},
            )
            patched = await running.client.patch(
                f"/products/{product}", json={"name": "changed"}, headers=tenant_a.headers
            )
            await holder.rollback()
        now = await running.client.get(f"/products/{product}", headers=tenant_a.headers)
    finally:
        await stop_app(manager, running)
    assert (patched.status_code, patched.headers["retry-after"]) == (503, "1")
    assert patched.json()["detail"].startswith(
        "the database cancelled the request's statement: it ran past the statement timeout"
    )
    assert now.json()["name"] == "held"
