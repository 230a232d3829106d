"""Revisions that build or drop an index CONCURRENTLY (tenancy/steps.py): the tenant's writes go
on while its index builds, a failed build is cleaned up and resumed, a new tenant gets the
index in its one transaction."""

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantsvc.db.engine import create_engine
from tenantsvc.tenancy import fleet
from tenantsvc.tenancy.catalog import fingerprints, reference_fingerprint
from tenantsvc.tenancy.errors import MigrationError
from tenantsvc.tenancy.locking import LockPolicy
from tenantsvc.tenancy.migrator import EXTRA_VERSIONS_ENV, head
from tenantsvc.tenancy.provisioning import create_tenant
from tenantsvc.tenancy.steps import fresh_build, split
from tenantsvc.testing.app import make_settings
from tests.polling import until_sql
from tests.tenancy.fleet_tenants import enter, make_tenants, revisions_of
from tests.tenancy.revisions import concurrently, write_revision

SKU, INDEX = "x9301", "x9302"


def _revisions_with_index(
    directory: Path, monkeypatch: pytest.MonkeyPatch, unique: bool, column: str = "sku"
) -> str:
    """``sku`` (a plain revision), then an index on ``column`` built concurrently (a revision
    of its own); returns the head they chain onto."""
    old = head("tenant")
    write_revision(directory, SKU, old, "products.sku",
                   'op.add_column("products", sa.Column("sku", sa.Text))')  # fmt: skip
    create = concurrently(
        f'op.create_index("products_sku_idx", "products", ["{column}"], unique={unique}'
    )
    drop = concurrently('op.drop_index("products_sku_idx", table_name="products"')
    write_revision(directory, INDEX, SKU, "products.sku's index, concurrently", create, drop)
    monkeypatch.setenv(EXTRA_VERSIONS_ENV, str(directory))
    return old


async def _index(engine: AsyncEngine, schema: str) -> bool | None:
    """products_sku_idx: None if absent, else whether it is valid."""
    query = text("SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                 "WHERE c.relnamespace = to_regnamespace(:s) "
                 "AND c.relname = 'products_sku_idx'")  # fmt: skip
    async with engine.connect() as conn:
        return await conn.scalar(query, {"s": schema})  # type: ignore[no-any-return]


async def _waiting_build(engine: AsyncEngine) -> None:
    """Until a concurrent build waits for a transaction that writes its table."""
    query = ("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
             "AND query LIKE 'CREATE INDEX CONCURRENTLY%'")  # fmt: skip
    await until_sql(engine, query, "the concurrent build never waited")


async def test_the_tenants_writes_go_on_while_its_index_builds(
    fresh_engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schemas = await make_tenants(fresh_engine, 3, "ci")
    busy = schemas[0]
    _revisions_with_index(tmp_path, monkeypatch, unique=False)
    insert = text("INSERT INTO products (name, price_cents, stock) VALUES ('w', 1, 1)")
    async with fresh_engine.connect() as writer, writer.begin():
        await enter(writer, busy)
        await writer.execute(insert)  # a write in progress: the build must wait for it
        migration = asyncio.create_task(fleet.migrate_all(fresh_engine, concurrency=2))
        await _waiting_build(fresh_engine)
        # With a plain CREATE INDEX waiting for that writer, this write would queue behind it.
        async with fresh_engine.begin() as other:
            await enter(other, busy)
            await asyncio.wait_for(other.execute(insert), 5)
        assert not migration.done()
    summary = await asyncio.wait_for(migration, 30)
    assert (summary.migrated, summary.failures) == (3, [])
    assert await revisions_of(fresh_engine, schemas) == dict.fromkeys(schemas, INDEX)
    assert [await _index(fresh_engine, s) for s in schemas] == [True, True, True]
    async with fresh_engine.connect() as conn:  # the same schema as a fresh build, no drift
        reference = await reference_fingerprint(conn, INDEX)
        assert set((await fingerprints(conn, schemas)).values()) == {reference}
    again = await fleet.migrate_all(fresh_engine)
    assert (again.migrated, again.skipped) == (0, 3)


async def test_a_failed_build_is_cleaned_up_and_a_rerun_resumes(
    fresh_engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schemas = await make_tenants(fresh_engine, 2, "ci")
    dup = schemas[1]
    _revisions_with_index(tmp_path, monkeypatch, unique=True)
    await fleet.migrate_all(fresh_engine, target=SKU)
    async with fresh_engine.begin() as conn:  # a tenant whose data the unique index refuses
        await enter(conn, dup)
        await conn.execute(text("INSERT INTO products (name, price_cents, stock, sku) "
                                "VALUES ('a', 1, 1, 'same'), ('b', 1, 1, 'same')"))  # fmt: skip
    summary = await fleet.migrate_all(fresh_engine)
    [failure] = summary.failures
    assert failure.slug == "ci001"
    assert "could not create unique index" in (failure.error or "")
    assert await _index(fresh_engine, dup) is None  # the invalid index was dropped
    assert await revisions_of(fresh_engine, schemas) == {schemas[0]: INDEX, dup: SKU}
    async with fresh_engine.begin() as conn:  # a build killed half way leaves an invalid index
        await enter(conn, dup)
        await conn.execute(text("UPDATE products SET sku = NULL WHERE name = 'b'"))
    async with fresh_engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f"SET search_path TO {dup}"))
        await conn.execute(text("INSERT INTO products (name, price_cents, stock, sku) "
                                "VALUES ('c', 1, 1, 'same')"))  # fmt: skip
        with pytest.raises(Exception, match="could not create unique index"):
            await conn.execute(text("CREATE UNIQUE INDEX CONCURRENTLY products_sku_idx "
                                    "ON products (sku)"))  # fmt: skip
        await conn.execute(text("DELETE FROM products WHERE name = 'c'"))
        await conn.invalidate()
    assert await _index(fresh_engine, dup) is False
    rerun = await fleet.migrate_all(fresh_engine)
    assert (rerun.migrated, rerun.failures) == (1, [])
    assert await _index(fresh_engine, dup) is True


async def test_a_tenant_stopped_after_its_first_step_says_where_it_is(
    fresh_engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [schema] = await make_tenants(fresh_engine, 1, "ci")
    old = _revisions_with_index(tmp_path, monkeypatch, unique=True, column="name")
    async with fresh_engine.begin() as conn:
        await enter(conn, schema)
        await conn.execute(text("INSERT INTO products (name, price_cents, stock) "
                                "VALUES ('same', 1, 1), ('same', 1, 1)"))  # fmt: skip
    [failure] = (await fleet.migrate_all(fresh_engine)).failures
    assert (failure.before, failure.after) == (old, SKU)  # sku committed, the index did not
    assert (failure.error or "").startswith(f"stopped at {SKU} (the steps before committed): ")
    assert await revisions_of(fresh_engine, [schema]) == {schema: SKU}
    async with fresh_engine.connect() as conn:
        recorded = await conn.scalar(text("SELECT revision FROM tenantsvc.tenant_revisions"))
    assert recorded == SKU  # what the next run plans from


async def test_downgrade_drops_the_index_concurrently_and_new_tenants_get_it(
    fresh_engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [old_tenant] = await make_tenants(fresh_engine, 1, "ci")
    _revisions_with_index(tmp_path, monkeypatch, unique=False)
    await fleet.migrate_all(fresh_engine)
    down = await fleet.migrate_all(fresh_engine, target=SKU)
    assert (down.migrated, down.failures) == (1, [])
    assert await _index(fresh_engine, old_tenant) is None
    new = (await create_tenant(fresh_engine, "ci_new")).schema  # built at head in one go
    assert await _index(fresh_engine, new) is True
    assert await revisions_of(fresh_engine, [new]) == {new: INDEX}


async def test_a_script_is_cut_into_steps_at_its_concurrent_revisions() -> None:
    script = (
        "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL);\n\n"
        "-- Running upgrade  -> a1\n\nCREATE TABLE t (x int);\n\n"
        "INSERT INTO alembic_version (version_num) VALUES ('a1');\n\n"
        "-- Running upgrade a1 -> a2\n\nALTER TABLE t ADD y int;\n\n"
        "UPDATE alembic_version SET version_num='a2' WHERE alembic_version.version_num = 'a1';\n\n"
        "-- Running upgrade a2 -> a3\n\n"
        'CREATE UNIQUE INDEX CONCURRENTLY "Odd""Name" ON t (x);\n\n'
        "DROP INDEX CONCURRENTLY old_idx;\n\n"
        "CREATE INDEX CONCURRENTLY live_idx ON t (x) WHERE y IS NULL;\n\n"
        "UPDATE alembic_version SET version_num='a3' WHERE alembic_version.version_num = 'a2';\n\n"
        "-- Running upgrade a3 -> a4\n\nALTER TABLE t ADD z int;\n\n"
        "UPDATE alembic_version SET version_num='a4' WHERE alembic_version.version_num = 'a3';\n\n"
    )
    first, index, last = split(script)
    assert (first.target, first.indexes) == ("a2", ())
    assert "CREATE TABLE alembic_version" in first.sql
    assert "ADD y" in first.sql
    assert index.target == "a3"
    assert [(i.index, i.creates) for i in index.indexes] == [
        ('Odd"Name', True),
        ("old_idx", False),
        ("live_idx", True),
    ]
    assert index.sql.startswith("UPDATE alembic_version")
    assert "INDEX" not in index.sql
    assert (last.target, last.indexes) == ("a4", ())
    assert "ADD z" in last.sql
    assert "CONCURRENTLY" not in fresh_build(script)
    mixed = script.replace("DROP INDEX CONCURRENTLY old_idx;", "ALTER TABLE t ADD w int;")
    with pytest.raises(MigrationError, match="revision a3: 'ALTER TABLE t ADD w int'"):
        split(mixed)


async def test_the_connection_goes_back_to_the_pool_without_the_tenant_or_its_lock(
    empty_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pooled again after a clean run (its session reset), closed after a failed one."""
    engine = create_engine(make_settings(empty_database_url, pool_size=1, max_overflow=0))
    session = ("SELECT pg_backend_pid(), current_setting('search_path'), "
               "current_setting('lock_timeout'), current_setting('statement_timeout'), "
               "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory')")  # fmt: skip
    try:
        await fleet.migrate_shared(engine)
        [schema] = [(await create_tenant(engine, "pooled")).schema]
        _revisions_with_index(tmp_path, monkeypatch, unique=True, column="name")
        async with engine.connect() as conn:
            pid, *fresh = (await conn.execute(text(session))).one()
        summary = await fleet.migrate_all(engine, concurrency=1)
        assert (summary.migrated, summary.failures) == (1, [])
        async with engine.connect() as conn:
            assert tuple((await conn.execute(text(session))).one()) == (pid, *fresh)
        assert fresh[:2] == ['"$user", public', "0"]  # the defaults, not the tenant's
        await fleet.migrate_all(engine, target=SKU)  # the index dropped concurrently: again
        async with engine.begin() as conn:
            await enter(conn, schema)
            await conn.execute(text("INSERT INTO products (name, price_cents, stock) "
                                    "VALUES ('same', 1, 1), ('same', 1, 1)"))  # fmt: skip
        assert (await fleet.migrate_all(engine, concurrency=1)).failures  # the build refused
        async with engine.connect() as conn:
            after = (await conn.execute(text(session))).one()
        assert after[0] != pid  # its connection was closed, not pooled
        assert tuple(after[1:]) == tuple(fresh)
    finally:
        await engine.dispose()


async def test_a_tenant_given_up_after_its_index_says_how_far_it_got(
    fresh_engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The revision after the index waits for a lock in vain: every attempt resumes from the
    index, and the tenant is reported there, not where the run found it."""
    [schema] = await make_tenants(fresh_engine, 1, "ci")
    old = _revisions_with_index(tmp_path, monkeypatch, unique=False)
    write_revision(tmp_path, "x9303", INDEX, "users.note",
                   'op.add_column("users", sa.Column("note", sa.Text))')  # fmt: skip
    quick = LockPolicy(lock_timeout_ms=200, retries=2, pause_seconds=0.05)
    async with fresh_engine.connect() as holder:
        # Holds users without a snapshot: a concurrent build waits for every transaction with
        # an older snapshot, whichever tables it reads, and this test is not about that.
        driver: Any = (await holder.get_raw_connection()).driver_connection
        await driver.execute(f"BEGIN; LOCK TABLE {schema}.users IN ACCESS SHARE MODE")
        [failure] = (await fleet.migrate_all(fresh_engine, policy=quick)).failures
        await driver.execute("ROLLBACK")
    assert (failure.before, failure.after, failure.attempts) == (old, INDEX, 3)
    assert "could not lock its tables in 3 attempts" in (failure.error or "")
    assert "nothing changed in this tenant past x9302" in (failure.error or "")
    assert await revisions_of(fresh_engine, [schema]) == {schema: INDEX}
    rerun = await fleet.migrate_all(fresh_engine, policy=quick)
    assert (rerun.migrated, rerun.failures) == (1, [])
