"""The order statement reaches products only through index lookups, one per line, under the
hot transactions' generic plans: a plan that walks the tenant's catalogue costs every order
time proportional to the number of products."""

import httpx

from tenantsvc.db.engine import create_engine
from tenantsvc.db.session import tenant_connection
from tenantsvc.db.statements import TenantStatements
from tenantsvc.orders.queries import PLACE
from tests.conftest import TenantHandle, make_settings
from tests.orders.test_orders import _user


async def test_order_plan_looks_up_each_line_by_key(
    client: httpx.AsyncClient, database_url: str, tenant_a: TenantHandle
) -> None:
    items = [{"name": f"p{i}", "price_cents": 1, "stock": 5} for i in range(300)]
    bulk = await client.post("/products/bulk", json={"items": items}, headers=tenant_a.headers)
    ids = sorted(bulk.json()["ids"])
    user = await _user(client, tenant_a)
    engine = create_engine(make_settings(database_url, pool_size=1, max_overflow=0))
    wanted = [ids[10], ids[200]]
    try:
        opened = tenant_connection(engine, tenant_a.schema, TenantStatements(0), tenant_a.role)
        async with opened as conn:
            await conn.driver.execute(f"PREPARE place(bigint, bigint[], int[], int) AS {PLACE}")
            plan = await conn.driver.fetch(
                "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) "
                f"EXECUTE place({user}, ARRAY{wanted}::bigint[], ARRAY[1, 1], 2)"
            )
            await conn.driver.execute("DEALLOCATE place")
    finally:
        await engine.dispose()
    text = "\n".join(row[0] for row in plan)
    assert "Seq Scan on products" not in text, text
    assert "Rows Removed" not in text, text  # no scan reads products the order does not name
    assert "Update on products" in text, text
