"""Migrations under live traffic: a long transaction in a tenant delays its migration, never its
requests; migrations are not bound by the requests' statement timeout."""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from tenantsvc.db.engine import create_engine
from tenantsvc.tenancy import fleet, lifecycle
from tenantsvc.tenancy.admin import get_tenant
from tenantsvc.tenancy.errors import MigrationError, TenancyError
from tenantsvc.tenancy.locking import LOCK_CLASS, LockPolicy, is_lock_conflict
from tenantsvc.tenancy.migrator import EXTRA_VERSIONS_ENV, head
from tenantsvc.tenancy.tenant_migration import FleetTenant, migrate_tenant
from tenantsvc.testing.app import make_settings
from tests.tenancy.fleet_tenants import enter, make_tenants, revisions_of
from tests.tenancy.revisions import add_sku_revision, concurrently, write_revision

QUICK = LockPolicy(lock_timeout_ms=200, retries=2, pause_seconds=0.05)


async def _in_tenant(conn: AsyncConnection, schema: str, sql: str) -> object:
    await enter(conn, schema)
    return await conn.scalar(text(sql))


@asynccontextmanager
async def _long_transaction(engine: AsyncEngine, schema: str) -> AsyncIterator[None]:
    """A transaction that has read the tenant's products and stays open: a report, say."""
    async with engine.connect() as conn, conn.begin():
        await _in_tenant(conn, schema, "SELECT count(*) FROM products")
        yield


async def _read_while(engine: AsyncEngine, schema: str, running: asyncio.Task[object]) -> float:
    """The tenant's slowest read while ``running`` runs (each read a request's transaction)."""
    slowest = 0.0
    while not running.done():
        started = time.perf_counter()
        async with engine.connect() as conn, conn.begin():
            await _in_tenant(conn, schema, "SELECT count(*) FROM products")
        slowest = max(slowest, time.perf_counter() - started)
        await asyncio.sleep(0.01)
    return slowest


async def test_a_long_transaction_delays_its_tenants_migration_not_its_reads(
    fresh_engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schemas = await make_tenants(fresh_engine, 4, "lk")
    old, new = add_sku_revision(tmp_path, monkeypatch)
    busy = schemas[1]
    async with _long_transaction(fresh_engine, busy):
        migrating = fleet.migrate_all(fresh_engine, concurrency=2, policy=QUICK)
        migration = asyncio.create_task(migrating)
        # Without a lock timeout the ALTER waits for the long transaction, and every read of
        # the tenant queues behind the ALTER: both would hang here until the timeout.
        slowest = await asyncio.wait_for(_read_while(fresh_engine, busy, migration), 20)
        summary = await migration
    assert slowest < 5  # each wait behind the ALTER ends with its 0.2 s lock timeout
    assert summary.migrated == 3
    [failure] = summary.failures
    assert (failure.slug, failure.attempts) == ("lk001", QUICK.retries + 1)
    assert "could not lock its tables in 3 attempts" in (failure.error or "")
    assert "last: canceling statement due to lock timeout" in (failure.error or "")
    assert "re-run" in (failure.error or "")
    revisions = await revisions_of(fresh_engine, schemas)
    assert revisions == {s: old if s == busy else new for s in schemas}
    rerun = await fleet.migrate_all(fresh_engine, policy=QUICK)  # the transaction has ended
    assert (rerun.migrated, rerun.failures) == (1, [])


async def test_a_lock_released_between_attempts_is_taken_on_retry(
    fresh_engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [schema] = await make_tenants(fresh_engine, 1, "lk")
    _, new = add_sku_revision(tmp_path, monkeypatch)
    patient = LockPolicy(lock_timeout_ms=100, retries=50, pause_seconds=0.05)
    async with _long_transaction(fresh_engine, schema):
        migration = asyncio.create_task(fleet.migrate_all(fresh_engine, policy=patient))
        await asyncio.sleep(0.5)
        assert not migration.done()
    summary = await asyncio.wait_for(migration, 30)
    assert (summary.migrated, summary.failures) == (1, [])
    assert (await revisions_of(fresh_engine, [schema]))[schema] == new


async def test_the_shared_track_waits_for_its_locks_like_a_tenant(empty_database_url: str) -> None:
    """A shared migration behind a long transaction on the registry gives up with the same
    one-line reason, leaves the registry at its revision, and a later run applies it."""
    engine = create_engine(make_settings(empty_database_url))
    try:
        await fleet.migrate_shared(engine, target="s0001")
        async with engine.connect() as reader, reader.begin():
            await reader.scalar(text("SELECT count(*) FROM tenantsvc.tenants"))  # stays open
            started = time.perf_counter()
            with pytest.raises(MigrationError) as refused:
                await asyncio.wait_for(fleet.migrate_shared(engine, QUICK), 20)
            waited = time.perf_counter() - started
        assert str(refused.value).startswith("the shared track could not lock its tables in 3 ")
        assert "nothing changed in the shared track" in str(refused.value)
        assert waited < 5  # three 0.2 s lock timeouts and two short pauses
        assert await _shared_revision(engine) == "s0001"
        await fleet.migrate_shared(engine, QUICK)  # the transaction has ended
        assert await _shared_revision(engine) == head("shared")
    finally:
        await engine.dispose()


async def _shared_revision(engine: AsyncEngine) -> object:
    async with engine.connect() as conn:
        return await conn.scalar(text("SELECT version_num FROM tenantsvc.alembic_version"))


def _sleeping_revision(directory: Path, seconds: float) -> str:
    upgrade = f'op.execute("SELECT pg_sleep({seconds})")'
    write_revision(directory, "x9100", head("tenant"), "a slow data migration", upgrade)
    return "x9100"


async def test_the_requests_statement_timeout_does_not_cut_a_migration_short(
    empty_database_url: str,
    fresh_engine: AsyncEngine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    [schema] = await make_tenants(fresh_engine, 1, "lk")
    new = _sleeping_revision(tmp_path, 0.5)
    monkeypatch.setenv(EXTRA_VERSIONS_ENV, str(tmp_path))
    # Connections made as the service and tenantctl make them: statement_timeout 200 ms.
    timed = create_async_engine(
        empty_database_url, connect_args={"server_settings": {"statement_timeout": "200"}}
    )
    try:
        cut = await fleet.migrate_all(timed, policy=LockPolicy(statement_timeout_ms=200))
        assert "statement timeout" in (cut.failures[0].error or "")
        summary = await fleet.migrate_all(timed)  # migrations' own default: no limit
    finally:
        await timed.dispose()
    assert (summary.migrated, summary.failures) == (1, [])
    assert (await revisions_of(fresh_engine, [schema]))[schema] == new


def test_lock_timeouts_and_deadlocks_are_recognised_bare_or_wrapped() -> None:
    class Bare(Exception):
        sqlstate = "55P03"

    class Deadlock(Exception):
        sqlstate = "40P01"

    class Wrapped(Exception):
        orig = Bare()

    other = Exception()
    other.__cause__ = ValueError()
    assert all(is_lock_conflict(e) for e in (Bare(), Deadlock(), Wrapped()))
    assert not is_lock_conflict(other)


async def test_a_concurrent_index_beside_other_statements_is_refused_before_any_tenant(
    fresh_engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [schema] = await make_tenants(fresh_engine, 1, "lk")
    old = head("tenant")
    index = concurrently('op.create_index("products_sku_idx", "products", ["sku"]')
    upgrade = 'op.add_column("products", sa.Column("sku", sa.Text))\n' + index
    write_revision(tmp_path, "x9200", old, "an index built concurrently", upgrade)
    monkeypatch.setenv(EXTRA_VERSIONS_ENV, str(tmp_path))
    with pytest.raises(MigrationError, match="revision x9200: 'ALTER TABLE products") as refused:
        await fleet.plan(fresh_engine)  # what --dry-run shows, and what migrate-all runs
    assert "into a revision of their own" in str(refused.value)  # steps.py says why
    with pytest.raises(MigrationError):
        await fleet.migrate_all(fresh_engine)
    assert (await revisions_of(fresh_engine, [schema]))[schema] == old  # untouched


async def test_archive_restore_and_purge_wait_for_no_migration_and_none_is_cut_off(
    fresh_engine: AsyncEngine,
) -> None:
    """Archiving renames the schema a migration of the tenant works in: while one holds the
    tenant's lock, archive, restore and purge are refused with a line that says why, and the
    schema stays where it is."""
    await make_tenants(fresh_engine, 1, "mv")
    async with fresh_engine.connect() as conn:
        tenant = await get_tenant(conn, "mv000")
    async with fresh_engine.connect() as migrating:  # as `_apply_in_steps` holds it
        await migrating.execute(text(f"SELECT pg_advisory_lock({LOCK_CLASS}, {tenant.id})"))
        with pytest.raises(TenancyError, match="'mv000' is being migrated: try again once"):
            async with fresh_engine.begin() as conn:
                await lifecycle.archive(conn, "mv000")
        await migrating.execute(text(f"SELECT pg_advisory_unlock({LOCK_CLASS}, {tenant.id})"))
    async with fresh_engine.begin() as conn:
        assert (await lifecycle.archive(conn, "mv000")).archived_schema is not None


@pytest.mark.parametrize("in_steps", [False, True], ids=["one_transaction", "in_steps"])
async def test_a_tenant_archived_after_the_run_listed_it_is_passed_by(
    fresh_engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_steps: bool
) -> None:
    """Listed while active, archived before its turn: its migration found no schema where it
    looked, and failed the run on "relation does not exist". It is passed by, as archived
    tenants are, whether its revision runs in one transaction or in steps."""
    await make_tenants(fresh_engine, 2, "ap")
    old = head("tenant")
    statement = 'op.create_index("products_name_idx", "products", ["name"]'
    upgrade = concurrently(statement) if in_steps else statement + ")"
    write_revision(tmp_path, "x9501", old, "an index", upgrade)
    monkeypatch.setenv(EXTRA_VERSIONS_ENV, str(tmp_path))
    async with fresh_engine.connect() as conn:
        listed = [await get_tenant(conn, slug) for slug in ("ap000", "ap001")]
    async with fresh_engine.begin() as conn:
        await lifecycle.archive(conn, "ap000")
    for tenant in listed:
        fleet_tenant = FleetTenant(tenant.id, tenant.slug, tenant.schema)
        outcome = await migrate_tenant(fresh_engine, fleet_tenant, old, "x9501")
        assert outcome.error is None, outcome.error
        assert outcome.skipped == (tenant.slug == "ap000")
    assert (await revisions_of(fresh_engine, [listed[1].schema]))[listed[1].schema] == "x9501"
