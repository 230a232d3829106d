"""Per-tenant statement texts (db/statements.py): each tenant's plan is kept and reused on a
shared connection, rows stay the tenant's own, and the number of tenants given their own texts
is bounded per connection."""

from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantsvc.db.engine import create_engine
from tenantsvc.db.session import tenant_connection
from tenantsvc.db.statements import TenantStatements
from tenantsvc.products import queries
from tests.conftest import TenantHandle, make_settings

PLANS = (
    "SELECT statement, generic_plans + custom_plans AS runs FROM pg_prepared_statements "
    "WHERE statement LIKE '/*%FROM products%' ORDER BY statement"
)


def test_each_connection_admits_up_to_capacity_tenants() -> None:
    statements = TenantStatements(statement_cache_size=12)  # 2 tenants x 4, + the shared 4
    assert statements.capacity == 2
    first: dict[str, object] = {}
    a, b = statements.prefix("tenant_a", first), statements.prefix("tenant_b", first)
    assert (a, b) == ("/* tenant_a */ ", "/* tenant_b */ ")
    assert statements.prefix("tenant_c", first) == ""  # past capacity: the shared texts
    assert statements.prefix("tenant_a", first) == a  # admitted tenants keep theirs
    # The bound is per connection, where the plans live: another one admits its own tenants.
    second: dict[str, object] = {}
    assert statements.prefix("tenant_c", second) == "/* tenant_c */ "
    assert statements.prefix("tenant_d", second) == "/* tenant_d */ "
    assert statements.prefix("tenant_a", second) == ""
    assert TenantStatements(statement_cache_size=0).prefix("tenant_a", {}) == ""


def test_a_full_connection_admits_a_home_tenant_in_place_of_a_guest() -> None:
    statements, info = TenantStatements(statement_cache_size=12), dict[str, object]()
    assert statements.prefix("tenant_g", info, at_home=False) == "/* tenant_g */ "
    assert statements.prefix("tenant_h", info, at_home=True) == "/* tenant_h */ "
    assert statements.prefix("tenant_x", info, at_home=False) == ""  # guests never displace
    assert statements.prefix("tenant_i", info, at_home=True) == "/* tenant_i */ "
    assert statements.prefix("tenant_g", info) == ""  # the guest gave up its place
    assert statements.prefix("tenant_j", info, at_home=True) == ""  # no guest left to displace
    assert statements.prefix("tenant_h", info) == "/* tenant_h */ "


def test_only_plain_schema_names_reach_the_comment() -> None:
    statements, info = TenantStatements(64), dict[str, object]()
    with pytest.raises(ValueError, match="plain schema name"):
        statements.prefix("tenant_a */ DROP TABLE products; /*", info)
    assert statements.prefix("tenant_a", info) == "/* tenant_a */ "
    admitted: Any = info["tenantsvc_own_texts"]
    assert len(admitted) == 1  # a refused name takes no place


async def _seed(client: httpx.AsyncClient, tenant: TenantHandle, name: str) -> int:
    body = {"name": name, "price_cents": 1, "stock": 1}
    created = await client.post("/products", json=body, headers=tenant.headers)
    assert created.status_code == 201
    product_id: int = created.json()["id"]
    return product_id


async def test_each_tenant_reuses_its_own_plan_on_one_connection(
    client: httpx.AsyncClient, database_url: str, tenant_a: TenantHandle, tenant_b: TenantHandle
) -> None:
    ids = {t.schema: await _seed(client, t, t.slug) for t in (tenant_a, tenant_b)}
    engine: AsyncEngine = create_engine(make_settings(database_url, pool_size=1, max_overflow=0))
    statements = TenantStatements(statement_cache_size=64)
    try:
        for _ in range(6):  # a, b, a, b, ... on the pool's single connection
            for tenant in (tenant_a, tenant_b):
                async with tenant_connection(
                    engine, tenant.schema, statements, tenant.role
                ) as conn:
                    rows = await queries.live_page(conn, 0, 100)
                    assert [r["name"] for r in rows] == [tenant.slug]
                    assert [r["id"] for r in rows] == [ids[tenant.schema]]
        async with engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver is not None
            plans = await driver.fetch(PLANS)
    finally:
        await engine.dispose()
    # One statement per tenant, each run 6 times: prepared once, never re-prepared.
    assert [(p["statement"].split(" */")[0], p["runs"]) for p in plans] == [
        (f"/* {tenant_a.schema}", 6),
        (f"/* {tenant_b.schema}", 6),
    ]


async def test_cached_statements_do_not_expire(database_url: str) -> None:
    """asyncpg's default lifetime (300 s from preparation, not from last use) would re-prepare
    every tenant's statements every five minutes; the cache's size is the only bound."""
    engine: AsyncEngine = create_engine(make_settings(database_url, pool_size=1, max_overflow=0))
    try:
        async with engine.connect() as conn:
            driver: Any = (await conn.get_raw_connection()).driver_connection
            assert driver._stmt_cache.get_max_lifetime() == 0  # no public accessor
            assert driver._stmt_cache.get_max_size() == 4096
    finally:
        await engine.dispose()


async def test_past_capacity_a_tenant_shares_the_plain_text_and_still_reads_its_own_rows(
    client: httpx.AsyncClient, database_url: str, tenant_a: TenantHandle, tenant_b: TenantHandle
) -> None:
    ids = {t.schema: await _seed(client, t, t.slug) for t in (tenant_a, tenant_b)}
    engine: AsyncEngine = create_engine(make_settings(database_url, pool_size=1, max_overflow=0))
    statements = TenantStatements(statement_cache_size=2 * 4)  # room for one tenant's texts
    try:
        for _ in range(3):
            for tenant in (tenant_a, tenant_b):
                async with tenant_connection(
                    engine, tenant.schema, statements, tenant.role
                ) as conn:
                    rows = await queries.live_page(conn, 0, 100)
                    assert [r["id"] for r in rows] == [ids[tenant.schema]]
                    assert [r["name"] for r in rows] == [tenant.slug]
        async with engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver is not None
            plans = await driver.fetch(
                "SELECT statement, generic_plans + custom_plans AS runs "
                "FROM pg_prepared_statements WHERE statement LIKE '%FROM products%'"
            )
    finally:
        await engine.dispose()
    texts = {p["statement"].split("SELECT")[0]: p["runs"] for p in plans}
    # One tenant has its own text, whose plan served all its calls; the other shares the plain
    # text, whose plan is rebuilt whenever the search_path changes (which restarts its counts).
    # (A fresh connection serves its first tenant as a guest, whom the other tenant, at home,
    # then displaces: the guest's statement stays prepared until the cache's LRU drops it.)
    assert "" in texts
    kept = [prefix for prefix, runs in texts.items() if prefix and runs == 3]
    assert len(kept) == 1
    assert kept[0] in {f"/* {t.schema} */ " for t in (tenant_a, tenant_b)}
