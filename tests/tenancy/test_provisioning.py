import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from tenantsvc.db.models import TenantBase
from tenantsvc.tenancy import provisioning
from tenantsvc.tenancy.ddl import run_script
from tenantsvc.tenancy.errors import TenancyError, TenantExistsError
from tenantsvc.tenancy.fleet import migrate_all
from tenantsvc.tenancy.lifecycle import archive, purge
from tenantsvc.tenancy.migrator import head
from tenantsvc.tenancy.provisioning import create_tenant
from tests.conftest import TenantHandle

ROOT = Path(__file__).resolve().parents[2]


async def _schema_exists(engine: AsyncEngine, schema: str) -> bool:
    async with engine.connect() as conn:
        found = await conn.scalar(
            text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": schema}
        )
    return found is not None


async def _registered(engine: AsyncEngine, slug: str) -> bool:
    async with engine.connect() as conn:
        found = await conn.scalar(
            text("SELECT 1 FROM tenantsvc.tenants WHERE slug = :s"), {"s": slug}
        )
    return found is not None


async def test_failure_mid_create_leaves_nothing(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def migrate_then_fail(conn: AsyncConnection, schema: str, script: str) -> None:
        await run_script(conn, schema, script)
        raise RuntimeError("disk full, say")

    monkeypatch.setattr(provisioning, "run_script", migrate_then_fail)
    slug = f"broken_{uuid.uuid4().hex[:6]}"
    with pytest.raises(RuntimeError):
        await create_tenant(engine, slug)
    assert not await _schema_exists(engine, f"tenant_{slug}")
    assert not await _registered(engine, slug)
    monkeypatch.undo()
    await create_tenant(engine, slug)  # the same slug provisions cleanly afterwards
    assert await _registered(engine, slug)


async def test_duplicate_slug_is_refused(engine: AsyncEngine, tenant_a: TenantHandle) -> None:
    with pytest.raises(TenantExistsError):
        await create_tenant(engine, tenant_a.slug)


async def test_concurrent_creates_of_one_slug_make_one_tenant(engine: AsyncEngine) -> None:
    """The others lose the race on the schema's name, after the check for the slug passed:
    they are told the tenant exists, as a create after it is."""
    slug = f"race_{uuid.uuid4().hex[:8]}"
    done = await asyncio.gather(*(create_tenant(engine, slug) for _ in range(4)),
                                return_exceptions=True)  # fmt: skip
    assert sum(not isinstance(d, BaseException) for d in done) == 1, done
    assert all(isinstance(d, TenantExistsError) for d in done if isinstance(d, BaseException))


async def test_a_schema_no_tenant_owns_is_named_and_left_alone(engine: AsyncEngine) -> None:
    """A schema of the slug's name that no tenant owns (made by hand, or by another tool): it
    was "tenant 'x' already exists", which `tenantctl list` then did not show. It is named,
    said to be no tenant's, and kept: what it holds is someone's to look at."""
    slug = f"orphan_{uuid.uuid4().hex[:8]}"
    async with engine.begin() as conn:
        await conn.execute(text(f"CREATE SCHEMA tenant_{slug}"))
        await conn.execute(text(f"CREATE TABLE tenant_{slug}.notes (body text)"))
    with pytest.raises(TenancyError, match=f"schema tenant_{slug} exists, but no tenant") as err:
        await create_tenant(engine, slug)
    assert not isinstance(err.value, TenantExistsError)
    async with engine.connect() as conn:
        assert await conn.scalar(text(f"SELECT count(*) FROM tenant_{slug}.notes")) == 0
        registered = "SELECT count(*) FROM tenantsvc.tenants WHERE slug = :s"
        assert await conn.scalar(text(registered), {"s": slug}) == 0
    async with engine.begin() as conn:
        await conn.execute(text(f"DROP SCHEMA tenant_{slug} CASCADE"))
    assert (await create_tenant(engine, slug)).schema == f"tenant_{slug}"  # free once dropped


async def test_a_purged_slug_taken_again_gets_a_schema_name_no_tenant_had(
    engine: AsyncEngine,
) -> None:
    """A worker or replica that has not seen the purge yet finds the old name gone, never the
    new tenant's tables under it (tests/tenancy/test_isolation.py, tests/db/test_replicas.py)."""
    slug = f"again_{uuid.uuid4().hex[:6]}"
    schemas = []
    for _ in range(3):
        schemas.append((await create_tenant(engine, slug)).schema)
        async with engine.begin() as conn:
            await archive(conn, slug)
            await purge(conn, slug)
    assert schemas == [f"tenant_{slug}", f"tenant_2_{slug}", f"tenant_3_{slug}"]


@pytest.mark.parametrize(
    ("schema", "allowed"),
    [("tenant_{s}", True), ("tenant_2_{s}", True), ("tenant_17_{s}", True),
     ("tenant_0_{s}", False), ("tenant_2_x{s}", False), ("tenant_x_{s}", False),
     ("tenant_2_{s}_2", False), ("tenant_2__{s}", False), ("public", False)],
)  # fmt: skip
async def test_the_registry_admits_only_schema_names_of_the_slug(
    engine: AsyncEngine, schema: str, allowed: bool
) -> None:
    """Defence in depth: the database itself refuses a schema name the slug rules would not
    produce, numbered or not."""
    slug = f"chk_{uuid.uuid4().hex[:6]}"
    insert = text("INSERT INTO tenantsvc.tenants (slug, name, schema_name, status) "
                  "VALUES (:slug, 'x', :schema, 'provisioning')")  # fmt: skip
    async with engine.connect() as conn:
        if allowed:
            await conn.execute(insert, {"slug": slug, "schema": schema.format(s=slug)})
        else:
            with pytest.raises(IntegrityError, match="schema_name_safe"):
                await conn.execute(insert, {"slug": slug, "schema": schema.format(s=slug)})
        await conn.rollback()


async def test_a_create_waits_for_a_purge_of_its_slug_in_flight(engine: AsyncEngine) -> None:
    """The purge's transaction has dropped the schema but not committed: the create takes the
    next name, not the one the purge is about to free."""
    slug = f"inflight_{uuid.uuid4().hex[:6]}"
    await create_tenant(engine, slug)
    async with engine.connect() as conn:
        await archive(conn, slug)
        await purge(conn, slug)
        creating = asyncio.create_task(create_tenant(engine, slug))
        await asyncio.sleep(0.5)
        assert not creating.done()  # waiting for the slug
        await conn.commit()
    assert (await creating).schema == f"tenant_2_{slug}"


async def test_models_match_the_tenant_migrations(
    engine: AsyncEngine, tenant_a: TenantHandle
) -> None:
    def diff(connection: Connection) -> list[object]:
        connection.execute(
            text("SELECT set_config('search_path', :s, true)"), {"s": tenant_a.schema}
        )
        context = MigrationContext.configure(connection)
        return list(compare_metadata(context, TenantBase.metadata))

    async with engine.connect() as conn:
        differences = await conn.run_sync(diff)
    assert differences == []


async def test_migrate_all_then_create_is_all_a_new_database_needs(empty_database_url: str) -> None:
    engine = create_async_engine(empty_database_url)
    try:
        assert (await migrate_all(engine)).total == 0
        new = await create_tenant(engine, "first")
        async with engine.connect() as conn:
            version = await conn.scalar(
                text(f"SELECT version_num FROM {new.schema}.alembic_version")
            )
        assert version == head("tenant")
    finally:
        await engine.dispose()


def _alembic(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TENANTSVC_DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


async def test_autogenerate_sees_each_track_as_its_models_say(
    database_url: str, tenant_a: TenantHandle
) -> None:
    """``alembic check`` runs what ``revision --autogenerate`` runs, against a database at
    head: with nothing to change it must plan nothing. It planned to drop each tenant's version
    table (kept in the tenant's schema, which autogenerate took for a table of the models'),
    and to create every registry table again (it looked for them in the default schema)."""
    for track in (("-x", f"tenant={tenant_a.slug}"), ("--name", "shared")):
        checked = _alembic(database_url, *track, "check")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "No new upgrade operations detected." in checked.stdout


async def test_plain_alembic_works_per_tenant(database_url: str, tenant_a: TenantHandle) -> None:
    current = _alembic(database_url, "-x", f"tenant={tenant_a.slug}", "current")
    assert current.returncode == 0, current.stderr
    assert head("tenant") in current.stdout
    upgraded = _alembic(database_url, "-x", f"tenant={tenant_a.slug}", "upgrade", "head")
    assert upgraded.returncode == 0, upgraded.stderr
    shared = _alembic(database_url, "--name", "shared", "current")
    assert head("shared") in shared.stdout
    unknown = _alembic(database_url, "-x", "tenant=nobody_here", "current")
    assert unknown.returncode != 0
    assert "unknown tenant" in unknown.stderr
    offline = _alembic(database_url, "-x", f"tenant={tenant_a.slug}", "upgrade", "head", "--sql")
    assert f"set_config('search_path', '{tenant_a.schema}', true)" in offline.stdout
