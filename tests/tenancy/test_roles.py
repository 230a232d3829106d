"""Each tenant's own database role: PostgreSQL itself keeps a tenant's transactions out of
every other schema, whatever SQL they send."""

import uuid
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import make_url, text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from tenantsvc.db.engine import create_engine
from tenantsvc.db.session import tenant_connection, tenant_session
from tenantsvc.db.statements import TenantStatements
from tenantsvc.tenancy import fleet, lifecycle
from tenantsvc.tenancy.admin import TenantInfo, get_tenant
from tenantsvc.tenancy.doctor import check_roles
from tenantsvc.tenancy.errors import TenancyError
from tenantsvc.tenancy.provisioning import create_tenant
from tenantsvc.tenancy.roles import drop_role, give_role, isolate, role_prefix
from tenantsvc.testing.app import drop_roles_of
from tenantsvc.testing.postgres import with_database
from tests.conftest import TenantHandle, make_settings
from tests.tenancy.revisions import add_sku_revision

DENIED = "permission denied"


async def _info(engine: AsyncEngine, slug: str) -> TenantInfo:
    async with engine.connect() as conn:
        return await get_tenant(conn, slug)


async def _roles(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        found = await conn.execute(text("SELECT rolname FROM pg_roles"))
        return set(found.scalars())


async def test_the_hot_path_transaction_is_refused_other_schemas(
    engine: AsyncEngine, tenant_a: TenantHandle, tenant_b: TenantHandle
) -> None:
    a = await _info(engine, tenant_a.slug)
    assert a.role is not None
    opened = tenant_connection(engine, a.schema, TenantStatements(0), a.role)
    async with opened as conn:
        assert await conn.driver.fetchval("SELECT current_user") == a.role
        assert await conn.driver.fetchval("SELECT count(*) FROM products") == 0  # its own
        await conn.driver.execute("INSERT INTO users (email, name) VALUES ('a@a.io', 'A')")
    for sql in (
        f"SELECT count(*) FROM {tenant_b.schema}.products",  # another tenant's table
        f"INSERT INTO {tenant_b.schema}.users (email, name) VALUES ('x@x.io', 'X')",
        "SELECT count(*) FROM tenantsvc.api_keys",  # the registry
        "DELETE FROM alembic_version",  # its own schema's migration state
        "CREATE TABLE stray (id int)",  # its schema's shape belongs to migrations
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match=DENIED):
            async with tenant_connection(engine, a.schema, TenantStatements(0), a.role) as conn:
                await conn.driver.execute(sql)


async def test_the_orm_path_runs_as_the_role_too(
    engine: AsyncEngine, tenant_a: TenantHandle, tenant_b: TenantHandle
) -> None:
    a = await _info(engine, tenant_a.slug)
    maker = async_sessionmaker(engine)
    async with tenant_session(maker, a.schema, a.role) as session:
        assert await session.scalar(text("SELECT current_user")) == a.role
    with pytest.raises(ProgrammingError, match=DENIED):
        async with tenant_session(maker, a.schema, a.role) as session:
            await session.execute(text(f"SELECT * FROM {tenant_b.schema}.orders"))
    async with tenant_session(maker, a.schema, None) as session:  # without its role: the wall
        await session.execute(text(f"SELECT * FROM {tenant_b.schema}.orders"))  # it replaces


async def test_tables_a_migration_adds_are_the_roles_too(
    fresh_engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Default privileges: the sku revision adds a column and an index; a new table would get
    the same rights. Checked on every table the role's schema holds."""
    await create_tenant(fresh_engine, "grown")
    add_sku_revision(tmp_path, monkeypatch)
    assert (await fleet.migrate_all(fresh_engine)).failures == []
    async with fresh_engine.begin() as conn:
        schema = (await get_tenant(conn, "grown")).schema
        await conn.execute(text(f"CREATE TABLE {schema}.later (id int)"))  # as a migration would
        assert (await check_roles(conn)).status == "ok"
    grown = await _info(fresh_engine, "grown")
    opened = tenant_connection(fresh_engine, grown.schema, TenantStatements(0), grown.role)
    async with opened as conn:
        await conn.driver.execute("INSERT INTO later VALUES (1)")
        await conn.driver.execute("UPDATE products SET sku = 'x'")


async def test_isolate_gives_existing_tenants_roles_and_doctor_tells(
    fresh_engine: AsyncEngine,
) -> None:
    for slug in ("old_one", "old_two"):
        await create_tenant(fresh_engine, slug, with_role=False)
    await create_tenant(fresh_engine, "newer")
    async with fresh_engine.connect() as conn:
        warned = await check_roles(conn)
    assert warned.status == "warn"
    assert "old_one" in warned.detail
    assert "old_two" in warned.detail
    assert await isolate(fresh_engine) == ["old_one", "old_two"]
    assert await isolate(fresh_engine) == []  # nothing left to do
    async with fresh_engine.connect() as conn:
        assert (await check_roles(conn)).status == "ok"
    old = await _info(fresh_engine, "old_one")
    assert old.role is not None
    # A role that lost its rights (by hand) fails the check; isolate SLUG completes it.
    async with fresh_engine.begin() as conn:
        await conn.execute(text(f'REVOKE SELECT ON {old.schema}.orders FROM "{old.role}"'))
        failed = await check_roles(conn)
    assert failed.status == "fail"
    assert "old_one" in failed.detail
    assert await isolate(fresh_engine, "old_one") == ["old_one"]
    async with fresh_engine.connect() as conn:
        assert (await check_roles(conn)).status == "ok"


async def test_isolate_all_repairs_dropped_and_short_roles_too(fresh_engine: AsyncEngine) -> None:
    """A database restored into a new cluster comes without its tenants' roles (they are the
    cluster's, not in the dump), and a role may lose a right by hand. `isolate --all` took
    only the tenants without a role: each had to be repaired by its slug."""
    for slug in ("fine", "dropped", "short"):
        await create_tenant(fresh_engine, slug)
    dropped, short = await _info(fresh_engine, "dropped"), await _info(fresh_engine, "short")
    async with fresh_engine.begin() as conn:
        await drop_role(conn, dropped.role)
        await conn.execute(text(f'REVOKE UPDATE ON {short.schema}.products FROM "{short.role}"'))
    assert await isolate(fresh_engine) == ["dropped", "short"]
    async with fresh_engine.connect() as conn:
        assert (await check_roles(conn)).status == "ok"
    assert await isolate(fresh_engine) == []


async def test_a_copy_of_the_database_on_the_cluster_purges_and_gets_roles_of_its_own(
    admin_url: str, empty_database_url: str, fresh_engine: AsyncEngine
) -> None:
    """A staging copy (CREATE DATABASE ... TEMPLATE, or a dump restored on the same cluster)
    comes with its tenants' rights granted to the original's roles. A purge there failed ("role
    ... cannot be dropped because some objects depend on it"), and so did a purge in the
    original while the copy held rights through its role."""
    for slug in ("kept", "gone"):
        await create_tenant(fresh_engine, slug)
    original_role = (await _info(fresh_engine, "gone")).role
    await fresh_engine.dispose()  # a template has no connections
    original = make_url(empty_database_url).database
    copy = f"{original}_copy"
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{copy}" TEMPLATE "{original}"'))
    copied = create_engine(make_settings(with_database(admin_url, copy)))
    try:
        async with copied.connect() as conn:
            warned = await check_roles(conn)
        assert (warned.status, "use the other's roles" in warned.detail) == ("warn", True)
        async with copied.begin() as conn:
            assert (await lifecycle.purge(conn, "gone")).role == original_role  # kept: in use
        async with fresh_engine.begin() as conn:
            assert (await lifecycle.purge(conn, "gone")).role is None  # dropped: held nowhere
        assert await isolate(copied) == ["kept"]
        own = (await _info(copied, "kept")).role
        assert own is not None
        assert own.startswith(role_prefix(copy))
        async with copied.connect() as conn:
            assert (await check_roles(conn)).status == "ok"
        async with fresh_engine.begin() as conn:  # the copy no longer holds the original's
            assert (await lifecycle.purge(conn, "kept")).role is None
    finally:
        await copied.dispose()
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE "{copy}" WITH (FORCE)'))
            await drop_roles_of(conn, copy)
        await admin.dispose()


async def test_purge_drops_the_role_and_archive_keeps_it(fresh_engine: AsyncEngine) -> None:
    await create_tenant(fresh_engine, "leaving")
    role = (await _info(fresh_engine, "leaving")).role
    assert role in await _roles(fresh_engine)
    async with fresh_engine.begin() as conn:
        await lifecycle.archive(conn, "leaving")
    assert role in await _roles(fresh_engine)
    async with fresh_engine.begin() as conn:
        await lifecycle.restore(conn, "leaving")
    restored = await _info(fresh_engine, "leaving")
    async with tenant_connection(fresh_engine, restored.schema, TenantStatements(0), role) as conn:
        assert await conn.driver.fetchval("SELECT count(*) FROM products") == 0  # rights kept
    async with fresh_engine.begin() as conn:
        await lifecycle.purge(conn, "leaving")
    assert role not in await _roles(fresh_engine)


async def test_without_createrole_creating_a_role_says_what_to_do(
    fresh_engine: AsyncEngine,
) -> None:
    await create_tenant(fresh_engine, "plain", with_role=False)
    tenant_id = (await _info(fresh_engine, "plain")).id
    weak = f"weak_{uuid.uuid4().hex[:8]}"
    async with fresh_engine.connect() as conn, conn.begin():
        await conn.execute(text(f"CREATE ROLE {weak} NOLOGIN"))  # rolled back with the rest
        await conn.execute(text(f"GRANT USAGE ON SCHEMA tenantsvc TO {weak}"))
        await conn.execute(text(f"GRANT SELECT ON tenantsvc.tenants TO {weak}"))
        await conn.execute(text(f"GRANT USAGE ON SCHEMA tenant_plain TO {weak}"))  # as its owner
        await conn.execute(text(f"SET LOCAL ROLE {weak}"))
        with pytest.raises(TenancyError, match=r"CREATEROLE.*TENANTSVC_TENANT_ROLES=false"):
            await give_role(conn, tenant_id)
        await conn.rollback()


async def test_a_temp_table_left_on_a_pooled_connection_never_reaches_the_next_tenant(
    database_url: str, engine: AsyncEngine, tenant_a: TenantHandle, tenant_b: TenantHandle
) -> None:
    """PostgreSQL looks in the session's temporary schema before the search_path unless the
    search_path names it: a temporary `products` that one tenant's transaction left on a
    connection would shadow the next tenant's. The search_path names it last, and the role it
    was made under owns it."""
    a, b = await _info(engine, tenant_a.slug), await _info(engine, tenant_b.slug)
    one = create_engine(make_settings(database_url, pool_size=1, max_overflow=0))
    leave = "CREATE TEMP TABLE products AS SELECT 'a secret of a' AS name"
    try:
        async with tenant_connection(one, a.schema, TenantStatements(0), a.role) as conn:
            await conn.driver.execute(leave)
        for role in (b.role, None):  # the search_path alone keeps it away, and so does the role
            async with tenant_connection(one, b.schema, TenantStatements(0), role) as conn:
                assert await conn.driver.fetch("SELECT name FROM products") == []  # b's own
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match=DENIED):
            async with tenant_connection(one, b.schema, TenantStatements(0), b.role) as conn:
                await conn.driver.fetch("SELECT name FROM pg_temp.products")  # named outright
    finally:
        await one.dispose()
