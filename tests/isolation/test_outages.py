"""Outages: PostgreSQL restarted under load, and an exhausted pool. The service answers 503
problems promptly (never hangs), recovers by itself, and never answers with another tenant's
rows on the way."""

import asyncio
import logging
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from pgserver.postgres_server import PostgresServer, get_server
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantsvc.main import create_app
from tenantsvc.tenancy.fleet import migrate_shared
from tenantsvc.tenancy.provisioning import create_tenant
from tenantsvc.testing.app import stop_app
from tests.conftest import Running, TenantHandle, make_settings, start_app
from tests.isolation import faults, fuzz
from tests.read_only import read_only_database


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test's own, since the test stops and starts it."""
    server = get_server(tempfile.mkdtemp(prefix="tenantsvc-outage-pg-"), cleanup_mode="delete")
    yield server
    server.cleanup()


def _stop(server: PostgresServer) -> None:
    from pgserver._commands import POSTGRES_BIN_PATH

    command = [
        str(POSTGRES_BIN_PATH / "pg_ctl"),
        "-D",
        str(server.pgdata),
        "-w",
        "-m",
        "fast",
        "stop",
    ]
    subprocess.run(command, check=True, capture_output=True, user=server.system_user)


@pytest.fixture(params=[True, False], ids=["pre_ping", "no_pre_ping"])
async def outage_app(
    own_server: PostgresServer, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Running, list[fuzz.Tenant]]]:
    """Both ways a pool can find dead connections: pre-ping on checkout, or (pre-ping off, the
    benchmark's setting) the first failure, which closes the connection and renews its slot."""
    url = f"postgresql+asyncpg://postgres@/postgres?host={own_server.get_postmaster_info().socket_dir}"
    settings = make_settings(url, pool_size=4, max_overflow=0, pool_timeout_seconds=2,
                             pool_pre_ping=request.param)  # fmt: skip
    from tenantsvc.db.engine import create_engine

    engine = create_engine(settings)
    await migrate_shared(engine)
    tag = uuid.uuid4().hex[:4]
    made = [await create_tenant(engine, f"m{tag}{i}") for i in range(2)]
    await engine.dispose()
    manager, running = await start_app(app=faults.mount(create_app(settings)))
    tenants = [fuzz.Tenant(t.slug, t.schema, t.api_key, t.role) for t in made]
    for tenant in tenants:
        await fuzz.seed(running.client, tenant, products=10, users=1)
    yield running, tenants
    await stop_app(manager, running)


async def test_restart_under_load_gives_503_then_recovers(
    outage_app: tuple[Running, list[fuzz.Tenant]], own_server: PostgresServer
) -> None:
    running, tenants = outage_app
    seen: list[tuple[float, int, float]] = []  # (start, status, seconds)
    leaks: list[str] = []
    stop = asyncio.Event()

    async def load(tenant: fuzz.Tenant) -> None:
        while not stop.is_set():
            started = time.monotonic()
            response = await running.client.get("/products", headers=tenant.headers)
            seen.append((started, response.status_code, time.monotonic() - started))
            if response.status_code == 200:
                leaks.extend(fuzz.foreign_markers(response.text, tenant.slug))
            else:
                assert response.headers["content-type"] == "application/problem+json"
            await asyncio.sleep(0.01)

    workers = [asyncio.create_task(load(t)) for t in tenants for _ in range(3)]
    await asyncio.sleep(0.5)
    await asyncio.to_thread(_stop, own_server)
    down_at = time.monotonic()  # the server has finished shutting down
    await asyncio.sleep(2.0)
    restart_at = time.monotonic()
    await asyncio.to_thread(own_server.ensure_postgres_running)
    up_at = time.monotonic()
    await asyncio.sleep(5.0)
    stop.set()
    await asyncio.gather(*workers)

    statuses = Counter(status for _, status, _ in seen)
    assert set(statuses) <= {200, 503}, statuses
    assert leaks == []
    during = [s for start, s, _ in seen if down_at < start < restart_at]
    assert during, "no request was made while the server was down"
    assert set(during) == {503}, Counter(during)
    assert max(seconds for *_, seconds in seen) < 5, "a request hung instead of failing fast"
    first_ok = min(start for start, status, _ in seen if start > up_at and status == 200)
    assert first_ok - up_at < 3, "the service did not recover by itself within seconds"
    tail = [status for start, status, _ in seen if start > up_at + 3]
    assert tail
    assert set(tail) == {200}


async def test_a_key_the_snapshot_lacks_is_a_503_while_the_database_is_down(
    outage_app: tuple[Running, list[fuzz.Tenant]], own_server: PostgresServer
) -> None:
    """A slug and key the worker's snapshot does not hold (a tenant created a moment ago, or a
    stranger's) make it ask the registry; with the database away that was a 500, raised in
    the tenant middleware, outside the app's handlers. Now the 503 every other request gets."""
    running, _ = outage_app
    stranger = {"X-Tenant-ID": "nosuch", "Authorization": "Bearer tsk_" + "A" * 43}
    assert (await running.client.get("/products", headers=stranger)).status_code == 401
    await asyncio.to_thread(_stop, own_server)
    response = await running.client.get("/products", headers=stranger)
    assert (response.status_code, response.headers.get("retry-after")) == (503, "1")
    assert response.json()["detail"] == "the database is unavailable, retry shortly"
    await asyncio.to_thread(own_server.ensure_postgres_running)  # for the app's last flush


async def test_pool_exhaustion_is_a_prompt_503_and_heals(database_url: str, tenant_a: Any) -> None:
    # One tenant exhausts the pool here: its cap off (tests/db/test_fairness.py has the cap).
    settings = make_settings(database_url, pool_size=2, max_overflow=0, pool_timeout_seconds=0.5,
                             tenant_max_connections=0)  # fmt: skip
    manager, running = await start_app(app=faults.mount(create_app(settings)))
    try:
        await running.state["registry"].refresh()
        started = time.monotonic()
        responses = await asyncio.gather(*(
            running.client.get("/_fault/sleep", params={"seconds": 1.5}, headers=tenant_a.headers)
            for _ in range(8)
        ))  # fmt: skip
        statuses = Counter(r.status_code for r in responses)
        assert statuses == {200: 2, 503: 6}, statuses
        assert all(r.headers["content-type"] == "application/problem+json"
                   for r in responses if r.status_code == 503)  # fmt: skip
        assert time.monotonic() - started < 4
        again = await asyncio.gather(*(
            running.client.get("/products", headers=tenant_a.headers) for _ in range(6)
        ))  # fmt: skip
        assert {r.status_code for r in again} == {200}
        assert (await running.client.get("/readyz")).status_code == 200
    finally:
        await stop_app(manager, running)


@pytest.mark.parametrize("errcode", ["disk_full", "out_of_memory"])
async def test_a_database_out_of_disk_or_memory_is_a_503_and_an_error_in_the_log(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    tenant_a: TenantHandle,
    caplog: pytest.LogCaptureFixture,
    errcode: str,
) -> None:
    """The server raises it where it ran out (here a trigger raises what PostgreSQL raises
    when it cannot extend a file). It was an "unhandled error" and a 500, which blamed the
    service; the client should retry, the operator act."""
    body = {"name": "p", "price_cents": 1, "stock": 5}
    product = (await client.post("/products", json=body, headers=tenant_a.headers)).json()["id"]
    user = {"email": f"{errcode}@x.io", "name": "U"}
    user_id = (await client.post("/users", json=user, headers=tenant_a.headers)).json()["id"]
    schema = tenant_a.schema
    async with engine.begin() as conn:
        await conn.execute(text(
            f"CREATE FUNCTION {schema}.exhausted() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN "
            "RAISE EXCEPTION 'could not extend file: No space left on device' "
            f"USING ERRCODE = '{errcode}'; END$$"
        ))  # fmt: skip
        await conn.execute(text(
            f"CREATE TRIGGER exhausted BEFORE INSERT ON {schema}.order_items "
            f"FOR EACH ROW EXECUTE FUNCTION {schema}.exhausted()"
        ))  # fmt: skip
    order = {"user_id": user_id, "items": [{"product_id": product, "quantity": 2}]}
    try:
        with caplog.at_level(logging.WARNING, logger="tenantsvc.problems"):
            placed = await client.post("/orders", json=order, headers=tenant_a.headers)
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP FUNCTION {schema}.exhausted() CASCADE"))
    assert (placed.status_code, placed.headers.get("retry-after")) == (503, "1"), placed.text
    assert placed.json()["detail"].startswith("the database ran out of a resource")
    [logged] = [r for r in caplog.records if r.name == "tenantsvc.problems"]
    assert (logged.levelno, "No space left on device" in logged.getMessage()) == (
        logging.ERROR,
        True,
    )
    stock = (await client.get(f"/products/{product}", headers=tenant_a.headers)).json()["stock"]
    assert stock == 5  # the stock taken before the lines failed went back


async def test_a_database_that_takes_no_writes_serves_reads_and_answers_writes_503(
    empty_database_url: str, fresh_engine: AsyncEngine
) -> None:
    """An operator's maintenance switch (default_transaction_read_only), or a primary demoted
    in a failover: each write was an "unhandled error" and a 500."""
    tenant = TenantHandle.of(await create_tenant(fresh_engine, "frozen"))
    async with read_only_database(fresh_engine, empty_database_url):
        manager, running = await start_app(make_settings(empty_database_url))  # connects after
        try:
            body = {"email": "no@write.io", "name": "N"}
            refused = await running.client.post("/users", json=body, headers=tenant.headers)
            read = await running.client.get("/users", headers=tenant.headers)
        finally:
            await stop_app(manager, running)
    assert (refused.status_code, refused.headers.get("retry-after")) == (503, "30"), refused.text
    assert refused.json()["detail"].startswith("the database takes no writes at the moment")
    assert (read.status_code, read.json()["items"]) == (200, [])


async def test_a_login_the_database_refuses_is_a_503_and_an_error_that_says_why(
    database_url: str,
    engine: AsyncEngine,
    tenant_a: TenantHandle,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The service's login stops working while it runs (its role locked, or credentials
    rotated: a vault's that expired): each new connection is refused. That was a 500
    "unhandled error" per request, and nothing said the login was the cause."""
    login = f"svc_{uuid.uuid4().hex[:8]}"
    async with engine.begin() as conn:
        await conn.execute(text(f"CREATE ROLE {login} LOGIN SUPERUSER"))
    url = make_url(database_url).set(username=login).render_as_string(hide_password=False)
    manager, running = await start_app(make_settings(url, pool_size=1, max_overflow=0))
    try:
        assert (await running.client.get("/products", headers=tenant_a.headers)).status_code == 200
        async with engine.begin() as conn:
            await conn.execute(text(f"ALTER ROLE {login} NOLOGIN"))
            await conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :login"
            ), {"login": login})  # fmt: skip
        with caplog.at_level(logging.WARNING, logger="tenantsvc.problems"):
            answers = [await running.client.get("/products", headers=tenant_a.headers)
                       for _ in range(3)]  # fmt: skip
    finally:
        await stop_app(manager, running)
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP ROLE {login}"))
    assert [(a.status_code, a.headers.get("retry-after")) for a in answers] == [(503, "1")] * 3
    refused = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert refused, [r.getMessage() for r in caplog.records]
    assert all("refused the service's login" in r.getMessage() for r in refused)
    assert f'role "{login}" is not permitted to log in' in refused[0].getMessage()


async def test_a_worker_that_starts_while_the_database_is_away_serves_once_it_is_back(
    own_server: PostgresServer,
) -> None:
    """A worker replacing one that died during an outage (or restarted by a SIGHUP then)
    failed its startup on the registry, and uvicorn's supervisor then stopped the whole
    server: the healthy worker too, and nothing served once the database was back. It starts
    now, answers 503s, and serves when the database returns."""
    url = f"postgresql+asyncpg://postgres@/postgres?host={own_server.get_postmaster_info().socket_dir}"
    settings = make_settings(url, registry_poll_seconds=0.2)
    from tenantsvc.db.engine import create_engine

    engine = create_engine(settings)
    await migrate_shared(engine)
    tenant = TenantHandle.of(await create_tenant(engine, "late"))
    await engine.dispose()
    await asyncio.to_thread(_stop, own_server)
    manager, running = await start_app(settings)  # raised, before
    try:
        away = await running.client.get("/products", headers=tenant.headers)
        assert (away.status_code, away.headers.get("retry-after")) == (503, "1"), away.text
        await asyncio.to_thread(own_server.ensure_postgres_running)
        back = await running.client.get("/products", headers=tenant.headers)
    finally:
        await stop_app(manager, running)
    assert (back.status_code, back.json()["items"]) == (200, [])
