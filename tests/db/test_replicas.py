"""Read replicas against a real streaming replica: reads really served by it, read-your-writes
under artificial lag, and a replica that dies."""

import asyncio
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx
import pytest
from fastapi import APIRouter
from pgserver.postgres_server import PostgresServer, get_server
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tenantsvc.db.engine import create_engine
from tenantsvc.deps import ReadDbSession
from tenantsvc.main import create_app
from tenantsvc.tenancy.doctor import Check, run_checks
from tenantsvc.tenancy.fleet import migrate_shared
from tenantsvc.tenancy.lifecycle import archive, purge, restore_at_head
from tenantsvc.tenancy.provisioning import create_tenant
from tenantsvc.tenant_routes import TenantRoute
from tenantsvc.testing.app import stop_app
from tests.cli.test_serve import _serve_exits
from tests.conftest import Running, TenantHandle, make_settings, start_app
from tests.polling import until
from tests.replica import ReplicaHandle, streaming_replica


@pytest.fixture
def primary() -> Iterator[PostgresServer]:
    server = get_server(tempfile.mkdtemp(prefix="tenantsvc-primary-"), cleanup_mode="delete")
    yield server
    server.cleanup()


@pytest.fixture
def replica(primary: PostgresServer) -> Iterator[ReplicaHandle]:
    with streaming_replica(primary) as handle:
        yield handle


async def _sql(url: str, sql: str) -> object:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            result = await conn.execute(text(sql))
            return result.scalar() if result.returns_rows else None
    finally:
        await engine.dispose()


@pytest.fixture
async def replicated(
    primary: PostgresServer, replica: ReplicaHandle
) -> AsyncIterator[tuple[Running, TenantHandle]]:
    async with _replicated(primary, replica) as served:
        yield served


@asynccontextmanager
async def _replicated(
    primary: PostgresServer, replica: ReplicaHandle, **overrides: Any
) -> AsyncIterator[tuple[Running, TenantHandle]]:
    settings = make_settings(_url(primary), read_database_url=replica.url,
                             replica_check_seconds=0.1, replica_wait_ms=200,
                             **overrides)  # fmt: skip
    engine = create_engine(settings)
    await migrate_shared(engine)
    new = await create_tenant(engine, f"r{uuid.uuid4().hex[:6]}")
    await engine.dispose()
    app = create_app(settings)
    probe = APIRouter()

    @probe.get("/_replica/recovery")
    async def in_recovery(session: ReadDbSession) -> dict[str, bool]:
        value = (await session.execute(text("SELECT pg_is_in_recovery()"))).scalar_one()
        return {"in_recovery": bool(value)}

    app.include_router(probe)
    behind = APIRouter(route_class=TenantRoute)

    @behind.get("/_replica/sku")  # a column that only a migration yet to come adds
    async def skus(session: ReadDbSession) -> dict[str, int]:
        return {
            "skus": (await session.execute(text("SELECT count(sku) FROM products"))).scalar_one()
        }

    app.include_router(behind)
    manager, running = await start_app(app=app)
    tenant = TenantHandle.of(new)
    # Until the replica serves the new tenant: replayed, and found healthy by the monitor (a
    # 200 alone could be the primary's, while a first check on a loaded machine failed).
    deadline = time.monotonic() + 10
    while True:
        ready = await running.client.get("/products", headers=tenant.headers)
        if (ready.status_code, ready.headers.get("x-served-by")) == (200, "replica0"):
            break
        assert time.monotonic() < deadline, (ready.status_code, ready.headers)
        await asyncio.sleep(0.05)
    try:
        yield running, tenant
    finally:
        await stop_app(manager, running)


async def test_reads_are_served_by_the_replica(replicated: tuple[Running, TenantHandle]) -> None:
    running, tenant = replicated
    probe = await running.client.get("/_replica/recovery", headers=tenant.headers)
    assert probe.json() == {"in_recovery": True}
    assert probe.headers["x-served-by"] == "replica0"
    write = await running.client.post("/products", json={"name": "w", "price_cents": 1, "stock": 1},
                                      headers=tenant.headers)  # fmt: skip
    assert write.headers["x-served-by"] == "primary"


async def test_read_your_writes_under_replication_lag(
    replicated: tuple[Running, TenantHandle], replica: ReplicaHandle
) -> None:
    running, tenant = replicated
    await _sql(replica.url, "SELECT pg_wal_replay_pause()")
    created = await running.client.post("/products", json={"name": "fresh", "price_cents": 1,
                                        "stock": 1}, headers=tenant.headers)  # fmt: skip
    assert created.status_code == 201
    token = created.headers["x-consistency-token"]
    url = f"/products/{created.json()['id']}"
    stale = await running.client.get(url, headers=tenant.headers)
    assert (stale.status_code, stale.headers["x-served-by"]) == (404, "replica0")  # lag is real
    # With whitespace around it, which RFC 9110 says is not part of a header's value.
    mine = await running.client.get(
        url, headers={**tenant.headers, "X-Consistency-Token": f" {token}\t"}
    )
    assert (mine.status_code, mine.headers["x-served-by"]) == (200, "primary")
    await _sql(replica.url, "SELECT pg_wal_replay_resume()")
    deadline = time.monotonic() + 10
    while True:
        caught_up = await running.client.get(
            url, headers={**tenant.headers, "X-Consistency-Token": token}
        )
        assert caught_up.status_code == 200
        if caught_up.headers["x-served-by"] == "replica0":
            break
        assert time.monotonic() < deadline, "the replica never served the token after catching up"
        await asyncio.sleep(0.05)


async def test_reads_waiting_for_a_replica_share_its_position_reads(
    replicated: tuple[Running, TenantHandle], replica: ReplicaHandle
) -> None:
    """32 reads carrying a token the replica has not replayed wait for it together: its
    position is read once per 5 ms at most (31 times in their 200 ms), not by each read in
    turn (424 times, 860 transactions on the replica)."""
    running, tenant = replicated
    await _sql(replica.url, "SELECT pg_wal_replay_pause()")
    transactions = (
        "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'postgres'"
    )
    before = await _replica_transactions(running, replica, transactions)
    ahead = {**tenant.headers, "X-Consistency-Token": "FF/0"}
    reads = [running.client.get("/products", headers=ahead) for _ in range(32)]
    answers = await asyncio.gather(*reads)
    assert {(r.status_code, r.headers["x-served-by"]) for r in answers} == {(200, "primary")}
    # About 200 ms of waiting (each read's own, as they arrive), the monitor's checks, new
    # connections' set-up, and the count's own connection: some 75 transactions.
    made = await _replica_transactions(running, replica, transactions) - before
    assert made < 250, made


async def _replica_transactions(running: Running, replica: ReplicaHandle, sql: str) -> int:
    """Counted once every connection of the app's replica pool has ended (a backend reports
    its counts when it goes idle, at most once a second, and when it exits)."""
    await running.state["db"].router.replicas[0].engine.dispose()
    await asyncio.sleep(0.1)
    return int(str(await _sql(replica.url, sql)))


async def test_a_replica_gives_a_row_the_etag_the_primary_gave_it(
    replicated: tuple[Running, TenantHandle],
) -> None:
    """The ETag is the row's xmin, which streaming replication copies with the row: a client
    may read from a replica and send If-Match to the primary."""
    running, tenant = replicated
    created = await running.client.post("/products", json={"name": "e", "price_cents": 1,
                                        "stock": 1}, headers=tenant.headers)  # fmt: skip
    url = f"/products/{created.json()['id']}"
    patched = await running.client.patch(url, json={"stock": 2}, headers=tenant.headers)
    assert patched.headers["x-served-by"] == "primary"
    replayed = {**tenant.headers, "X-Consistency-Token": patched.headers["x-consistency-token"]}

    reads: list[httpx.Response] = []

    async def from_the_replica() -> bool:
        reads.append(await running.client.get(url, headers=replayed))
        return reads[-1].headers["x-served-by"] == "replica0"

    await until(from_the_replica, "the replica never served the patched row")
    assert (reads[-1].json()["stock"], reads[-1].headers["etag"]) == (2, patched.headers["etag"])
    if_match = {**tenant.headers, "If-Match": reads[-1].headers["etag"]}
    assert (await running.client.patch(url, json={"stock": 3}, headers=if_match)).status_code == 200


async def test_replica_reads_serve_through_a_migration_that_changes_what_they_return(
    primary: PostgresServer, replica: ReplicaHandle
) -> None:
    """The replica replays the ALTER, and its connections' prepared statements go stale just
    as the primary's do: both read paths are replayed there, not failed.

    One connection per pool, so that each read after the ALTER lands where its statement was
    prepared before it. With more, a read may land on another connection (its home moved when
    the replica monitor's check grew the pool, say) and prepare afresh: served right, but the
    stale statement this test is about never met."""
    async with _replicated(primary, replica, pool_size=1, max_overflow=0) as (running, tenant):
        await _serve_through_alter(running, tenant, primary, replica)


async def _serve_through_alter(
    running: Running, tenant: TenantHandle, primary: PostgresServer, replica: ReplicaHandle
) -> None:
    client = running.client
    body = {"name": "p", "price_cents": 1, "stock": 7}
    created = await client.post("/products", json=body, headers=tenant.headers)
    reads = ["/products?limit=5", f"/products/{created.json()['id']}"]
    await _until_replica_has(replica, f"SELECT count(*) = 1 FROM {tenant.schema}.products")
    for path in reads:  # each statement prepared on the replica's connections
        response = await client.get(path, headers=tenant.headers)
        assert (response.status_code, response.headers["x-served-by"]) == (200, "replica0")
    replays = REGISTRY.get_sample_value("tenantsvc_replays_total", {"reason": "stale_statement"})
    await _sql(_url(primary), f"ALTER TABLE {tenant.schema}.products ALTER stock TYPE bigint")
    bigint = (f"SELECT data_type = 'bigint' FROM information_schema.columns WHERE "
              f"table_schema = '{tenant.schema}' AND table_name = 'products' "
              "AND column_name = 'stock'")  # fmt: skip
    await _until_replica_has(replica, bigint)
    for path in reads:
        response = await client.get(path, headers=tenant.headers)
        assert (response.status_code, response.headers["x-served-by"]) == (200, "replica0")
        assert response.text.count('"stock":7') == 1, response.text
    after = REGISTRY.get_sample_value("tenantsvc_replays_total", {"reason": "stale_statement"})
    assert (after or 0.0) == (replays or 0.0) + 2  # each read met a stale statement, once


async def _until_replica_has(replica: ReplicaHandle, sql: str) -> None:
    await until(lambda: _sql(replica.url, sql), f"the replica never replayed: {sql}")


async def test_a_tenant_the_replica_has_not_replayed_yet_is_read_from_the_primary(
    primary: PostgresServer, replica: ReplicaHandle
) -> None:
    """Created or restored moments ago, a tenant's schema (or role) may not be on a replica yet,
    lagging well within ``REPLICA_MAX_LAG_BYTES``. Its reads are served from the primary, not
    answered 503 "tables are missing"; the replica goes on serving every other tenant."""
    async with _replicated(primary, replica, replica_max_lag_bytes=1 << 30) as (running, known):
        engine = create_engine(make_settings(_url(primary)))
        try:
            restored = await create_tenant(engine, f"a{uuid.uuid4().hex[:6]}")
            await archive_and_replay(engine, replica, restored.slug, restored.schema)
            await _sql(replica.url, "SELECT pg_wal_replay_pause()")
            await restore_at_head(engine, restored.slug)
            created = [await create_tenant(engine, f"n{uuid.uuid4().hex[:6]}", with_role=role)
                       for role in (False, True)]  # fmt: skip
        finally:
            await engine.dispose()
        for tenant in [TenantHandle.of(restored), *map(TenantHandle.of, created)]:
            await until(partial(_served, running, tenant), f"{tenant.slug} was never served")
            for path in ("/products", "/products/1", "/users", "/users/1/orders"):
                response = await running.client.get(path, headers=tenant.headers)
                assert response.status_code in (200, 404), (path, response.text)
                assert response.headers["x-served-by"] == "primary"
        assert running.state["db"].router.replicas[0].healthy  # behind on three tenants, not down
        response = await running.client.get("/products", headers=known.headers)
        assert (response.status_code, response.headers["x-served-by"]) == (200, "replica0")


async def test_a_column_the_replica_has_not_replayed_yet_is_read_from_the_primary(
    replicated: tuple[Running, TenantHandle], primary: PostgresServer, replica: ReplicaHandle
) -> None:
    """New code reads a column that ``migrate-all`` added a moment ago, while the replica lags
    behind that ALTER: the read is served again on the primary, instead of a 500."""
    running, tenant = replicated
    await _sql(replica.url, "SELECT pg_wal_replay_pause()")
    await _sql(_url(primary), f"ALTER TABLE {tenant.schema}.products ADD sku varchar(64)")
    before = _replays("replica_behind")
    response = await running.client.get("/_replica/sku", headers=tenant.headers)
    assert (response.status_code, response.headers["x-served-by"]) == (200, "primary")
    assert _replays("replica_behind") == before + 1
    assert running.state["db"].router.replicas[0].healthy


async def test_a_slug_purged_and_made_again_never_reads_the_old_tenants_rows_on_a_replica(
    primary: PostgresServer, replica: ReplicaHandle
) -> None:
    """A purged tenant's slug may be taken again, and the new tenant's schema has the old one's
    name. A replica that has not replayed the purge still holds the old tenant's tables under
    that name: the new tenant must never be served them. Without tenant roles, nothing else
    would stop it (with them, the new tenant's role is not on the replica either)."""
    async with _replicated(primary, replica, replica_max_lag_bytes=1 << 30) as (running, _):
        engine = create_engine(make_settings(_url(primary)))
        try:
            slug = f"o{uuid.uuid4().hex[:6]}"
            old = await create_tenant(engine, slug, with_role=False)
            old_headers = TenantHandle.of(old).headers
            body = {"name": "the old tenant's", "price_cents": 1, "stock": 1}
            made = await running.client.post("/products", json=body, headers=old_headers)
            token = made.headers["x-consistency-token"]
            await _until_replica_has(replica, f"SELECT pg_last_wal_replay_lsn() >= '{token}'")
            await _sql(replica.url, "SELECT pg_wal_replay_pause()")
            async with engine.begin() as conn:
                await archive(conn, slug)
                await purge(conn, slug)
            new = await create_tenant(engine, slug, with_role=False)
        finally:
            await engine.dispose()
        headers = TenantHandle.of(new).headers
        await until(lambda: _answers(running, headers, 200), "the new tenant was never served")
        for path in ("/products", "/products/1"):
            response = await running.client.get(path, headers=headers)
            assert "the old tenant's" not in response.text, (path, response.headers)
            assert response.status_code in (200, 404), response.text


async def _answers(running: Running, headers: dict[str, str], status: int) -> bool:
    return (await running.client.get("/products", headers=headers)).status_code == status


async def archive_and_replay(
    engine: AsyncEngine, replica: ReplicaHandle, slug: str, schema: str
) -> None:
    async with engine.begin() as conn:
        await archive(conn, slug)
    await _until_replica_has(replica, f"SELECT to_regnamespace('{schema}') IS NULL")


async def _served(running: Running, tenant: TenantHandle) -> bool:
    response = await running.client.get("/products", headers=tenant.headers)
    return response.status_code != 404


def _replays(reason: str) -> float:
    return REGISTRY.get_sample_value("tenantsvc_replays_total", {"reason": reason}) or 0.0


def _url(server: PostgresServer) -> str:
    socket_dir = server.get_postmaster_info().socket_dir
    return f"postgresql+asyncpg://postgres@/postgres?host={socket_dir}"


async def test_a_dead_replica_is_skipped(
    replicated: tuple[Running, TenantHandle], replica: ReplicaHandle
) -> None:
    running, tenant = replicated
    await asyncio.to_thread(replica.stop)
    for _ in range(20):
        response = await running.client.get("/products", headers=tenant.headers)
        assert response.status_code == 200
        assert response.headers["x-served-by"] == "primary"
        await asyncio.sleep(0.02)


async def test_bad_token_is_400(replicated: tuple[Running, TenantHandle]) -> None:
    running, tenant = replicated
    for bad in ("nope", "1/2/3", "G/0", "0/" + "F" * 9):
        response = await running.client.get(
            "/products", headers={**tenant.headers, "X-Consistency-Token": bad}
        )
        assert response.status_code == 400, bad
        assert response.headers["content-type"] == "application/problem+json"


async def test_doctor_fails_on_a_standby_and_warns_of_a_read_only_primary(
    primary: PostgresServer, replica: ReplicaHandle
) -> None:
    """TENANTSVC_DATABASE_URL at a replica (or at a primary demoted in a failover): the
    service serves reads and answers every write 503, half up, and doctor said all was well.
    A primary switched read-only for maintenance does the same, until it is switched back."""
    settings = make_settings(_url(primary))
    engine = create_engine(settings)
    await migrate_shared(engine)
    await engine.dispose()

    async def writable(url: str) -> Check:
        checked = create_engine(make_settings(url))
        try:
            async with checked.connect() as conn:
                [check] = [c for c in await run_checks(conn, settings) if c.name == "writable"]
            return check
        finally:
            await checked.dispose()

    assert (await writable(_url(primary))).status == "ok"
    on_standby = await writable(replica.url)
    assert (on_standby.status, "standby" in on_standby.detail) == ("fail", True)
    # `serve` says so as it starts (then its workers fail here: no such app)
    served = await asyncio.to_thread(
        _serve_exits, {"TENANTSVC_DATABASE_URL": replica.url}, "--app", "tenantsvc.nowhere:app"
    )
    assert "warning: writable: the database is a standby" in served.stderr, served.stderr[-2000:]
    await _sql(_url(primary), "ALTER SYSTEM SET default_transaction_read_only = on")
    await _sql(_url(primary), "SELECT pg_reload_conf()")
    try:
        switched = await writable(_url(primary))
    finally:
        await _sql(_url(primary), "ALTER SYSTEM RESET default_transaction_read_only")
        await _sql(_url(primary), "SELECT pg_reload_conf()")
    assert (switched.status, "default_transaction_read_only is on" in switched.detail) == (
        "warn",
        True,
    )
