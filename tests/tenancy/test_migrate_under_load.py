"""migrate-all while the service serves every endpoint: no request may fail because of it.

A migration that changes what a statement returns (a column widened, a type changed) makes
PostgreSQL refuse every statement prepared before it on every pooled connection ("cached plan
must not change result type"). Inside a transaction the driver cannot retry that itself.
"""

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantsvc.tenancy import fleet
from tenantsvc.tenancy.migrator import EXTRA_VERSIONS_ENV, head
from tenantsvc.tenancy.provisioning import create_tenant
from tenantsvc.testing.app import TenantHandle, make_settings, running_app
from tests.polling import until
from tests.tenancy.revisions import write_revision


def _revisions(directory: Path, widths: list[int]) -> list[str]:
    """A chain of revisions onto the head, each widening the names again."""
    down, made = head("tenant"), []
    for width in widths:
        revision = f"x92{width}"
        upgrade = (f'op.alter_column("products", "name", type_=sa.String({width}))\n'
                   f'op.alter_column("users", "name", type_=sa.String({width}))\n'
                   f'op.add_column("products", sa.Column("note_{width}", sa.Text))')  # fmt: skip
        write_revision(directory, revision, down, "wider names, a new column", upgrade)
        made.append(revision)
        down = revision
    return made


async def _seed(client: httpx.AsyncClient, tenant: TenantHandle) -> tuple[int, list[int]]:
    headers = tenant.headers
    user = await client.post("/users", json={"email": "u@x.io", "name": "U"}, headers=headers)
    products = []
    for i in range(5):
        body = {"name": f"p{i}", "price_cents": 100, "stock": 100_000}
        products.append((await client.post("/products", json=body, headers=headers)).json()["id"])
    return user.json()["id"], products


async def _calls(
    client: httpx.AsyncClient, tenant: TenantHandle, user: int, products: list[int], i: int
) -> list[httpx.Response]:
    """One round of what clients do: every read path and every write path."""
    headers, product = tenant.headers, products[i % len(products)]
    order_body = {"user_id": user, "items": [{"product_id": product, "quantity": 1}]}
    order = await client.post("/orders", json=order_body, headers=headers)
    calls = [
        order,
        await client.get("/products?limit=20", headers=headers),
        await client.get(f"/products/{product}", headers=headers),
        await client.patch(f"/products/{product}", json={"price_cents": 100 + i}, headers=headers),
        await client.get(f"/users/{user}", headers=headers),
        await client.get(f"/users/{user}/orders", headers=headers),
        await client.get("/users?limit=5", headers=headers),
        await client.post(
            "/products", json={"name": f"n{i}", "price_cents": 1, "stock": 1}, headers=headers
        ),
    ]
    if order.status_code == 201:
        calls.append(await client.get(f"/orders/{order.json()['id']}", headers=headers))
    return calls


AFTER_EACH = 170  # requests served from the start of each migration before the next


async def test_requests_never_fail_while_migrations_change_what_statements_return(
    empty_database_url: str,
    fresh_engine: AsyncEngine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenants = []
    for i in range(3):
        made = await create_tenant(fresh_engine, f"live{i}")
        tenants.append(TenantHandle.of(made))
    revisions = _revisions(tmp_path, [300, 400, 500])
    monkeypatch.setenv(EXTRA_VERSIONS_ENV, str(tmp_path))
    async with running_app(make_settings(empty_database_url)) as running:
        statuses: Counter[int] = Counter()
        failures: list[Any] = []
        client = running.client
        seeded = [await _seed(client, t) for t in tenants]
        done = asyncio.Event()

        async def traffic(n: int) -> None:
            tenant, (user, products) = tenants[n % 3], seeded[n % 3]
            i = 0
            while not done.is_set():
                for response in await _calls(client, tenant, user, products, i):
                    statuses[response.status_code] += 1
                    if response.status_code >= 300:
                        failures.append((response.request.url.path, response.text[:200]))
                i += 1

        loops = [asyncio.create_task(traffic(n)) for n in range(9)]
        await asyncio.sleep(0.5)  # every connection has prepared the statements by now
        for revision in revisions:
            before = statuses.total()
            summary = await fleet.migrate_all(fresh_engine, revision)
            assert (summary.migrated, summary.failures) == (3, [])

            # Traffic across and after each migration, counted rather than timed: a slow
            # machine served 414 requests in the fixed 0.3 s pauses this used to take.
            async def served(since: int = before) -> bool:
                return statuses.total() - since >= AFTER_EACH

            await until(served, f"{AFTER_EACH} requests after migrating to {revision}", 60)
        done.set()
        await asyncio.gather(*loops)
    assert failures == [], (statuses, failures[:10])
    assert sum(statuses.values()) > 500
