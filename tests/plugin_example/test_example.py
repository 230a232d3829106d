"""The example from README's "Testing your app" section, run by CI so it cannot rot.

In your project's conftest.py:  pytest_plugins = ["tenantsvc.testing.plugin"]
"""

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tenantsvc.testing.app import TenantFactory, TenantHandle


async def test_products_are_per_tenant(
    tenant_client: httpx.AsyncClient, tenant: TenantHandle, tenant_factory: TenantFactory
) -> None:
    created = await tenant_client.post(
        "/products", json={"name": "lamp", "price_cents": 1200, "stock": 3}
    )
    assert created.status_code == 201
    other = await tenant_factory()
    response = await tenant_client.get(f"/products/{created.json()['id']}", headers=other.headers)
    assert response.status_code == 404  # another tenant does not see it


async def test_session_is_rolled_back_after_each_test(tenant_session: AsyncSession) -> None:
    await tenant_session.execute(
        text("INSERT INTO products (name, price_cents, stock) VALUES ('tmp', 1, 1)")
    )
    count = await tenant_session.scalar(text("SELECT count(*) FROM products"))
    assert count == 1
