"""migrate-all: skips, concurrency, per-tenant atomicity, locks, downgrades, drift."""

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tenantsvc.tenancy import fleet
from tenantsvc.tenancy.catalog import describe
from tenantsvc.tenancy.migrator import head, migrate_tenant_online
from tenantsvc.tenancy.provisioning import create_tenant
from tenantsvc.tenancy.status import fleet_status
from tests.tenancy.fleet_tenants import make_tenants, revisions_of
from tests.tenancy.revisions import add_sku_revision


async def _catalog(engine: AsyncEngine, schema: str) -> list[tuple[str, str, str]]:
    async with engine.connect() as conn:
        return await conn.run_sync(describe, schema)


async def test_provisioned_catalog_equals_step_by_step_migration(fresh_engine: AsyncEngine) -> None:
    provisioned = (await create_tenant(fresh_engine, "fast")).schema
    async with fresh_engine.begin() as conn:
        await conn.execute(text("CREATE SCHEMA tenant_stepwise"))
        await conn.run_sync(migrate_tenant_online, "tenant_stepwise", head("tenant"))
    fast, slow = (
        await _catalog(fresh_engine, provisioned),
        await _catalog(fresh_engine, "tenant_stepwise"),
    )
    kinds = {kind for kind, _, _ in fast}
    assert kinds == {"relation", "column", "constraint", "index", "sequence"}
    assert ("index", "products_live_id_idx", "CREATE INDEX products_live_id_idx ON products "
            "USING btree (id) WHERE (deleted_at IS NULL)") in fast  # fmt: skip
    assert fast == slow
    assert await revisions_of(fresh_engine, [provisioned, "tenant_stepwise"]) == {
        provisioned: head("tenant"),
        "tenant_stepwise": head("tenant"),
    }


async def test_upgrade_noop_and_downgrade(
    fresh_engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schemas = await make_tenants(fresh_engine, 6, "f")
    old, new = add_sku_revision(tmp_path, monkeypatch)
    summary = await fleet.migrate_all(fresh_engine, concurrency=3)
    assert (summary.migrated, summary.skipped, summary.failures) == (6, 0, [])
    assert set((await revisions_of(fresh_engine, schemas)).values()) == {new}
    catalog = await _catalog(fresh_engine, schemas[0])
    assert ("column", "products.sku", "character varying(64)") in catalog
    assert any(obj == "products_sku_idx" for kind, obj, _ in catalog if kind == "index")
    noop = await fleet.plan(fresh_engine)
    assert (noop.total, noop.behind) == (6, [])
    # The compiled path and Alembic's online path give the same schema.
    async with fresh_engine.begin() as conn:
        await conn.execute(text("CREATE SCHEMA tenant_online"))
        await conn.run_sync(migrate_tenant_online, "tenant_online", new)
    assert await _catalog(fresh_engine, "tenant_online") == catalog
    down = await fleet.migrate_all(fresh_engine, old, concurrency=2)
    assert (down.migrated, down.failures) == (6, [])
    assert set((await revisions_of(fresh_engine, schemas)).values()) == {old}
    assert not any(obj == "products.sku" for _, obj, _ in await _catalog(fresh_engine, schemas[0]))


async def test_a_limited_run_migrates_the_first_tenants_and_the_next_run_the_rest(
    fresh_engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schemas = await make_tenants(fresh_engine, 5, "stage")
    _, new = add_sku_revision(tmp_path, monkeypatch)
    rounds = []
    for _ in range(4):
        the_plan = await fleet.plan(fresh_engine, limit=2)
        summary = await fleet.run_plan(fresh_engine, the_plan, 2)
        revisions = await revisions_of(fresh_engine, schemas)
        rounds.append((summary.migrated, summary.skipped, summary.later,
                       [revisions[s] == new for s in schemas]))  # fmt: skip
    assert rounds == [
        (2, 0, 3, [True, True, False, False, False]),  # a canary batch, in slug order
        (2, 2, 1, [True, True, True, True, False]),
        (1, 4, 0, [True] * 5),
        (0, 5, 0, [True] * 5),
    ]


async def test_failing_tenant_stays_at_old_revision_and_rerun_finishes(
    fresh_engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schemas = await make_tenants(fresh_engine, 5, "f")
    broken = schemas[2]
    async with fresh_engine.begin() as conn:  # a hand-made column the migration will trip on
        await conn.execute(text(f"ALTER TABLE {broken}.products ADD COLUMN sku text"))
    old, new = add_sku_revision(tmp_path, monkeypatch)
    summary = await fleet.migrate_all(fresh_engine, concurrency=2)
    assert summary.migrated == 4
    assert [f.slug for f in summary.failures] == ["f002"]
    assert "already exists" in (summary.failures[0].error or "")
    revisions = await revisions_of(fresh_engine, schemas)
    assert revisions[broken] == old
    assert all(revisions[s] == new for s in schemas if s != broken)
    # Untouched: no index was half-created next to the failing statement.
    assert not any(obj == "products_sku_idx" for _, obj, _ in await _catalog(fresh_engine, broken))
    async with fresh_engine.begin() as conn:
        await conn.execute(text(f"ALTER TABLE {broken}.products DROP COLUMN sku"))
    rerun = await fleet.migrate_all(fresh_engine)
    assert (rerun.migrated, rerun.skipped, rerun.failures) == (1, 4, [])


async def test_fail_fast_stops_scheduling(
    fresh_engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schemas = await make_tenants(fresh_engine, 6, "f")
    async with fresh_engine.begin() as conn:
        await conn.execute(text(f"ALTER TABLE {schemas[0]}.products ADD COLUMN sku text"))
    add_sku_revision(tmp_path, monkeypatch)
    summary = await fleet.migrate_all(fresh_engine, concurrency=1, fail_fast=True)
    assert len(summary.failures) == 1
    assert summary.migrated == 0


async def test_two_concurrent_runs_never_apply_a_migration_twice(
    fresh_engine: AsyncEngine,
    empty_database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    schemas = await make_tenants(fresh_engine, 12, "f")
    _, new = add_sku_revision(tmp_path, monkeypatch)
    # Two engines: two independent runs, as two deploy jobs would be.
    other = create_async_engine(empty_database_url)
    try:
        first, second = await asyncio.gather(
            fleet.migrate_all(fresh_engine, concurrency=3),
            fleet.migrate_all(other, concurrency=3),
        )
    finally:
        await other.dispose()
    assert first.failures == [] and second.failures == []  # noqa: PT018
    assert first.migrated + second.migrated == 12
    assert set((await revisions_of(fresh_engine, schemas)).values()) == {new}


async def test_status_reports_revision_and_drift(fresh_engine: AsyncEngine) -> None:
    schemas = await make_tenants(fresh_engine, 3, "f")
    async with fresh_engine.begin() as conn:
        await conn.execute(text(f"CREATE INDEX hand_made ON {schemas[1]}.users (name)"))
    async with fresh_engine.connect() as conn:
        target, states = await fleet_status(conn)
    assert target == head("tenant")
    assert [(s.at_head, s.drift) for s in states] == [(True, False), (True, True), (True, False)]
    async with fresh_engine.connect() as conn:  # the reference schema left nothing behind
        assert await conn.scalar(text("SELECT to_regnamespace('tenantsvc_reference')")) is None


async def test_down_to_base_refuses_a_tenant_with_rows_and_comes_back_up(
    fresh_engine: AsyncEngine,
) -> None:
    """Dropping the first revision drops the tables: only a tenant without rows goes, and it
    comes back up as a new one is built (the version table, left by Alembic's downgrade, no
    longer stops the way up)."""
    empty, kept = await make_tenants(fresh_engine, 2, "base")
    async with fresh_engine.begin() as conn:
        await conn.execute(text(f"INSERT INTO {kept}.products (name, price_cents, stock) "
                                "VALUES ('pen', 1, 1)"))  # fmt: skip
    built = await _catalog(fresh_engine, empty)
    down = await fleet.migrate_all(fresh_engine, "base")
    assert down.migrated == 1
    [refused] = down.failures
    assert refused.slug == "base001"
    assert "the tenant has rows: t0001 cannot be undone" in (refused.error or "")
    assert await revisions_of(fresh_engine, [empty, kept]) == {empty: None, kept: head("tenant")}
    assert await _tables(fresh_engine, empty) == ["alembic_version"]
    up = await fleet.migrate_all(fresh_engine)
    assert (up.migrated, up.skipped, up.failures) == (1, 1, [])
    assert await _catalog(fresh_engine, empty) == built
    async with fresh_engine.connect() as conn:
        assert await conn.scalar(text(f"SELECT count(*) FROM {kept}.products")) == 1


async def _tables(engine: AsyncEngine, schema: str) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = :s"),
                                  {"s": schema})  # fmt: skip
        return sorted(r[0] for r in rows)
