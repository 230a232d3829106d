"""What each tenant holds (tenancy/usage.py): its own rows and files, never another's, biggest
first, archived tenants measured where their schema went."""

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantsvc.tenancy.errors import TenancyError
from tenantsvc.tenancy.lifecycle import archive
from tenantsvc.tenancy.usage import TenantUsage, tenant_usage
from tests.polling import until
from tests.tenancy.fleet_tenants import enter, make_tenants

PRODUCTS = 2_000


async def _usage(
    engine: AsyncEngine, status: str | None = None, top: int | None = None
) -> dict[str, TenantUsage]:
    async with engine.connect() as conn:
        return {u.slug: u for u in await tenant_usage(conn, status, top)}


async def _fill(engine: AsyncEngine, schema: str) -> None:
    """PRODUCTS products (every tenth soft-deleted) and one user, committed."""
    async with engine.begin() as conn:
        await enter(conn, schema)
        await conn.execute(
            text(
                "INSERT INTO products (name, price_cents, stock, deleted_at) "
                "SELECT 'p' || i, 100, 5, CASE WHEN i % 10 = 0 THEN now() END "
                "FROM generate_series(1, :n) i"
            ),
            {"n": PRODUCTS},
        )
        await conn.execute(text("INSERT INTO users (email, name) VALUES ('a@x.io', 'Ann')"))


async def _counted(engine: AsyncEngine, slug: str, rows: int) -> None:
    """The statistics system counts a commit's rows within a second or so."""

    async def check() -> bool:
        return (await _usage(engine))[slug].rows == rows

    await until(check, f"{slug} never showed {rows} rows")


async def test_each_tenant_is_measured_in_its_own_schema_biggest_first(
    fresh_engine: AsyncEngine,
) -> None:
    big, small = await make_tenants(fresh_engine, 2, "use")
    await _fill(fresh_engine, big)
    await _counted(fresh_engine, "use000", PRODUCTS + 1)  # soft-deleted rows are rows
    async with fresh_engine.connect() as conn:
        found = await tenant_usage(conn)
    assert [u.slug for u in found] == ["use000", "use001"]
    filled, empty = found
    assert (filled.schema, empty.schema) == (big, small)
    assert empty.rows == 0
    assert filled.table_bytes >= PRODUCTS * 40 > empty.table_bytes
    assert filled.index_bytes > empty.index_bytes > 0  # an empty primary key still has a page
    assert filled.total_bytes == filled.table_bytes + filled.index_bytes
    async with fresh_engine.connect() as conn:
        actual = await conn.scalar(
            text("SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                 "JOIN pg_namespace n ON n.oid = c.relnamespace "
                 "WHERE n.nspname = :s AND c.relkind = 'r' AND c.relname <> 'alembic_version'"),
            {"s": big},
        )  # fmt: skip
    assert filled.total_bytes == actual


async def test_archived_tenants_are_measured_where_their_schema_went(
    fresh_engine: AsyncEngine,
) -> None:
    (schema,) = await make_tenants(fresh_engine, 1, "arch")
    await _fill(fresh_engine, schema)
    await _counted(fresh_engine, "arch000", PRODUCTS + 1)
    before = (await _usage(fresh_engine))["arch000"]
    async with fresh_engine.begin() as conn:
        await archive(conn, "arch000")
    after = (await _usage(fresh_engine, status="archived"))["arch000"]
    assert after.schema.startswith("archived_")
    assert (after.rows, after.total_bytes) == (before.rows, before.total_bytes)
    assert "arch000" not in await _usage(fresh_engine, status="active")


async def test_top_keeps_the_biggest_and_a_bad_status_is_refused(
    fresh_engine: AsyncEngine,
) -> None:
    schemas = await make_tenants(fresh_engine, 3, "top")
    await _fill(fresh_engine, schemas[1])
    await _counted(fresh_engine, "top001", PRODUCTS + 1)
    assert list(await _usage(fresh_engine, top=1)) == ["top001"]
    assert len(await _usage(fresh_engine, top=2)) == 2
    with pytest.raises(TenancyError, match="unknown status 'bogus'"):
        await _usage(fresh_engine, status="bogus")
