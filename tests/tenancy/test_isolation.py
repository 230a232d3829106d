"""One tenant can never see or change another's rows, whatever ids it guesses."""

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantsvc.deps import DbSession
from tenantsvc.main import create_app
from tenantsvc.tenancy.lifecycle import archive, purge
from tenantsvc.tenancy.provisioning import create_tenant
from tenantsvc.testing.app import running_app
from tests.conftest import Running, TenantHandle, make_settings


async def _seed(client: httpx.AsyncClient, t: TenantHandle, marker: str) -> dict[str, int]:
    user = await client.post(
        "/users", json={"email": f"{marker}@x.io", "name": marker}, headers=t.headers
    )
    product = await client.post(
        "/products", json={"name": marker, "price_cents": 1, "stock": 10}, headers=t.headers
    )
    ids = {"user": user.json()["id"], "product": product.json()["id"]}
    order = await client.post(
        "/orders",
        json={"user_id": ids["user"], "items": [{"product_id": ids["product"], "quantity": 1}]},
        headers=t.headers,
    )
    ids["order"] = order.json()["id"]
    return ids


async def test_guessed_ids_of_another_tenant_are_404_and_untouched(
    client: httpx.AsyncClient, tenant_a: TenantHandle, tenant_b: TenantHandle
) -> None:
    a = await _seed(client, tenant_a, "alpha-secret")
    b_headers = tenant_b.headers
    attempts = [
        client.get(f"/products/{a['product']}", headers=b_headers),
        client.patch(f"/products/{a['product']}", json={"stock": 0}, headers=b_headers),
        client.delete(f"/products/{a['product']}", headers=b_headers),
        client.post(f"/products/{a['product']}/restore", headers=b_headers),
        client.get(f"/users/{a['user']}", headers=b_headers),
        client.get(f"/users/{a['user']}/orders", headers=b_headers),
        client.get(f"/orders/{a['order']}", headers=b_headers),
        client.post(
            "/orders",
            json={"user_id": a["user"], "items": [{"product_id": a["product"], "quantity": 1}]},
            headers=b_headers,
        ),
    ]
    for attempt in attempts:
        response = await attempt
        assert response.status_code == 404, response.text
        assert "alpha-secret" not in response.text
    for listing in ("/products", "/users"):
        response = await client.get(listing, headers=b_headers)
        assert response.json()["items"] == []
    product = await client.get(f"/products/{a['product']}", headers=tenant_a.headers)
    assert product.json()["stock"] == 9
    assert product.json()["deleted_at"] is None


async def test_same_ids_resolve_to_each_tenants_own_rows(
    client: httpx.AsyncClient, tenant_a: TenantHandle, tenant_b: TenantHandle
) -> None:
    a = await _seed(client, tenant_a, "alpha")
    b = await _seed(client, tenant_b, "bravo")
    assert a == b  # identity columns are per schema: the very same ids
    for t, marker in ((tenant_a, "alpha"), (tenant_b, "bravo")):
        got = await client.get(f"/products/{a['product']}", headers=t.headers)
        assert got.json()["name"] == marker
        orders = await client.get(f"/users/{a['user']}/orders", headers=t.headers)
        assert len(orders.json()["items"]) == 1


@pytest.fixture
async def one_connection_app(database_url: str, engine: AsyncEngine) -> AsyncIterator[Running]:
    """An app whose pool holds a single connection, with a handler that fails mid-transaction."""
    app = create_app(make_settings(database_url, pool_size=1, max_overflow=0))
    boom = APIRouter()

    @boom.get("/boom")
    async def fail_after_a_query(session: DbSession) -> None:
        await session.execute(text("SELECT count(*) FROM products"))
        raise RuntimeError("handler failed mid-transaction")

    app.include_router(boom)
    async with running_app(app=app) as running:
        yield running


async def test_failed_request_leaves_next_request_on_same_connection_in_its_tenant(
    one_connection_app: Running, tenant_a: TenantHandle, tenant_b: TenantHandle
) -> None:
    client = one_connection_app.client
    await client.post(
        "/products", json={"name": "A", "price_cents": 1, "stock": 1}, headers=tenant_a.headers
    )
    await client.post(
        "/products", json={"name": "B", "price_cents": 1, "stock": 1}, headers=tenant_b.headers
    )
    for _ in range(3):
        failed = await client.get("/boom", headers=tenant_a.headers)
        assert failed.status_code == 500
        assert failed.headers["content-type"] == "application/problem+json"
        after = await client.get("/products", headers=tenant_b.headers)
        assert [p["name"] for p in after.json()["items"]] == ["B"]
    engine = one_connection_app.state["db"].engine
    async with engine.connect() as conn:
        path = (await conn.execute(text("SHOW search_path"))).scalar_one()
    assert "tenant_" not in path


async def test_sql_outside_a_tenant_transaction_finds_no_tenant_tables(
    engine: AsyncEngine, tenant_a: TenantHandle
) -> None:
    for table in ("users", "products", "orders", "order_items"):
        async with engine.connect() as conn:
            with pytest.raises(ProgrammingError, match="does not exist"):
                await conn.execute(text(f"SELECT * FROM {table}"))


@pytest.mark.parametrize("roles", [False, True])
async def test_a_key_of_a_purged_tenant_never_reaches_the_next_tenant_of_its_slug(
    database_url: str, engine: AsyncEngine, roles: bool
) -> None:
    """The worker still holds the purged tenant in its registry snapshot (the poll is far off)
    when a new tenant takes the slug and stores rows. The old key is answered 404, as for any
    tenant that is gone (then 401, as any unknown key), and never sees the new tenant's rows.
    Without tenant roles, only the new tenant's schema name of its own stands between them."""
    settings = make_settings(database_url, registry_poll_seconds=60)
    async with running_app(app=create_app(settings)) as running:
        slug = f"p{uuid.uuid4().hex[:8]}"
        old = await create_tenant(engine, slug, with_role=roles)
        old_headers = TenantHandle.of(old).headers
        assert (await running.client.get("/products", headers=old_headers)).status_code == 200
        async with engine.begin() as conn:
            await archive(conn, slug)
            await purge(conn, slug)
        new = await create_tenant(engine, slug, with_role=roles)
        async with engine.begin() as conn:
            await conn.execute(text(f"INSERT INTO {new.schema}.products (name, price_cents, stock)"
                                    " VALUES ('the new tenant''s', 1, 1)"))  # fmt: skip
        answers = []
        for path in ("/products", "/products/1", "/products"):
            response = await running.client.get(path, headers=old_headers)
            assert "the new tenant's" not in response.text
            answers.append((response.status_code, response.json()["title"]))
        # The first finds its tables gone, which brings the snapshot up to date: the key with it.
        assert answers == [(404, "Unknown tenant")] + [(401, "Unauthorized")] * 2
