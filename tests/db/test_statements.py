"""Per-tenant statement texts (db/statements.py): each tenant's plan is kept and reused on a
shared connection, rows stay the tenant's own, and the number of tenants given their own texts
is bounded."""

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


def test_capacity_bounds_the_tenants_with_their_own_texts() -> None:
    statements = TenantStatements(statement_cache_size=8)  # 2 tenants x 4 hot statements
    assert statements.capacity == 2
    a, b = statements.texts("tenant_a")["SELECT 1"], statements.texts("tenant_b")["SELECT 1"]
    assert (a, b) == ("/* tenant_a */ SELECT 1", "/* tenant_b */ SELECT 1")
    assert statements.texts("tenant_c")["SELECT 1"] == "SELECT 1"  # past capacity: shared
    assert statements.texts("tenant_a")["SELECT 1"] == a  # admitted tenants keep theirs
    assert TenantStatements(statement_cache_size=0).texts("tenant_a")["SELECT 1"] == "SELECT 1"


def test_only_plain_schema_names_reach_the_comment() -> None:
    with pytest.raises(ValueError, match="plain schema name"):
        TenantStatements(64).texts("tenant_a */ DROP TABLE products; /*")


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
                async with tenant_connection(engine, tenant.schema, statements) as conn:
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
