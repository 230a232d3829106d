"""A read-only tenant (maintenance, a move): its reads are served, its writes refused before
they reach the database, and its background jobs cannot write either."""

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tenantsvc.tenancy import fleet
from tenantsvc.tenancy.admin import set_status
from tenantsvc.tenancy.background import run_for_slug
from tenantsvc.tenancy.models import TenantStatus
from tenantsvc.tenancy.provisioning import create_tenant
from tests.conftest import Running, TenantHandle
from tests.tenancy.revisions import shared_down_to
from tests.tenancy.test_middleware import assert_problem

PRODUCT = {"name": "pen", "price_cents": 150, "stock": 5}


async def _set(engine: AsyncEngine, running: Running, slug: str, status: TenantStatus) -> None:
    async with engine.begin() as conn:
        await set_status(conn, slug, status)
    await running.state["registry"].refresh()


async def _products(client: httpx.AsyncClient, tenant: TenantHandle) -> list[object]:
    response = await client.get("/products", headers=tenant.headers)
    assert response.status_code == 200
    items: list[object] = response.json()["items"]
    return items


async def test_reads_are_served_and_every_write_is_refused(
    client: httpx.AsyncClient,
    running: Running,
    engine: AsyncEngine,
    tenant_a: TenantHandle,
    tenant_b: TenantHandle,
) -> None:
    made = (await client.post("/products", json=PRODUCT, headers=tenant_a.headers)).json()
    user = await client.post("/users", json={"email": "a@x.io", "name": "A"},
                             headers=tenant_a.headers)  # fmt: skip
    await _set(engine, running, tenant_a.slug, TenantStatus.READ_ONLY)
    before = await _products(client, tenant_a)
    assert [p["id"] for p in before] == [made["id"]]  # type: ignore[index]
    order = {"user_id": user.json()["id"], "items": [{"product_id": made["id"], "quantity": 1}]}
    writes = [("post", "/products", PRODUCT), ("post", "/products/bulk", {"items": [PRODUCT]}),
              ("patch", f"/products/{made['id']}", {"stock": 1}),
              ("delete", f"/products/{made['id']}", None), ("post", "/orders", order),
              ("post", "/users", {"email": "b@x.io", "name": "B"})]  # fmt: skip
    for method, path, body in writes:
        response = await client.request(method, path, json=body, headers=tenant_a.headers)
        problem = assert_problem(response, 503)
        assert problem["title"] == "Tenant is read-only", path
        assert response.headers["Retry-After"] == "30"
    assert await _products(client, tenant_a) == before  # nothing written
    got = await client.get(f"/products/{made['id']}", headers=tenant_a.headers)
    assert got.status_code == 200
    other = await client.post("/products", json=PRODUCT, headers=tenant_b.headers)
    assert other.status_code == 201  # another tenant's writes go on
    await _set(engine, running, tenant_a.slug, TenantStatus.ACTIVE)
    again = await client.post("/products", json=PRODUCT, headers=tenant_a.headers)
    assert again.status_code == 201


async def _insert(session: AsyncSession) -> None:
    await session.execute(
        text("INSERT INTO products (name, price_cents, stock) VALUES ('j', 1, 1)")
    )


async def _count(session: AsyncSession) -> int:
    return int((await session.execute(text("SELECT count(*) FROM products"))).scalar_one())


async def test_background_jobs_of_a_read_only_tenant_cannot_write(
    engine: AsyncEngine, tenant_a: TenantHandle
) -> None:
    async with engine.begin() as conn:
        await set_status(conn, tenant_a.slug, TenantStatus.READ_ONLY)
    assert await run_for_slug(engine, tenant_a.slug, _count) == 0
    with pytest.raises(DBAPIError, match="read-only transaction"):
        await run_for_slug(engine, tenant_a.slug, _insert)
    async with engine.begin() as conn:
        await set_status(conn, tenant_a.slug, TenantStatus.ACTIVE)
    await run_for_slug(engine, tenant_a.slug, _insert)
    assert await run_for_slug(engine, tenant_a.slug, _count) == 1


async def test_a_shared_downgrade_never_lets_a_read_only_tenant_write(
    fresh_engine: AsyncEngine,
) -> None:
    await create_tenant(fresh_engine, "frozen")
    async with fresh_engine.begin() as conn:
        await set_status(conn, "frozen", TenantStatus.READ_ONLY)
        await conn.run_sync(shared_down_to, "s0003")  # before the read_only status
        # Read without the models, which describe the registry at head.
        status = await conn.scalar(
            text("SELECT status FROM tenantsvc.tenants WHERE slug = 'frozen'")
        )
        assert status == "suspended"
    await fleet.migrate_shared(fresh_engine)
    async with fresh_engine.begin() as conn:
        assert (await set_status(conn, "frozen", TenantStatus.READ_ONLY)).status == "read_only"
