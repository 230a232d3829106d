"""Background work in a tenant's context: concurrent jobs of different tenants stay apart."""

import asyncio

from fastapi import APIRouter, BackgroundTasks, Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tenantsvc.deps import CurrentTenant
from tenantsvc.main import create_app
from tenantsvc.observability.context import tenant_slug
from tenantsvc.tenancy.background import current_tenant, run_for_slug, schedule
from tenantsvc.testing.app import stop_app
from tests.conftest import TenantHandle, make_settings, start_app


async def _job(session: AsyncSession) -> tuple[str, str, list[str]]:
    tenant = current_tenant.get()
    assert tenant is not None
    await session.execute(
        text("INSERT INTO products (name, price_cents, stock) VALUES (:n, 1, 1)"),
        {"n": f"job of {tenant.slug}"},
    )
    await asyncio.sleep(0.05)  # interleave with the other tenant's job
    path = (await session.execute(text("SELECT current_setting('search_path')"))).scalar_one()
    names = list((await session.execute(text("SELECT name FROM products"))).scalars())
    return path, tenant_slug.get() or "", names


async def test_two_concurrent_jobs_for_different_tenants_stay_apart(
    engine: AsyncEngine, tenant_a: TenantHandle, tenant_b: TenantHandle
) -> None:
    results = await asyncio.gather(*(
        run_for_slug(engine, t.slug, _job) for t in (tenant_a, tenant_b, tenant_a, tenant_b)
    ))  # fmt: skip
    for (path, slug, names), t in zip(
        results, (tenant_a, tenant_b, tenant_a, tenant_b), strict=True
    ):
        assert path == f"{t.schema}, pg_temp"
        assert slug == t.slug
        assert all(n == f"job of {t.slug}" for n in names)
    assert current_tenant.get() is None


async def test_fastapi_background_task_writes_into_the_requests_tenant(
    database_url: str, tenant_a: TenantHandle, tenant_b: TenantHandle, engine: AsyncEngine
) -> None:
    app = create_app(make_settings(database_url))
    router = APIRouter()

    @router.post("/_jobs/stamp", status_code=202)
    async def stamp(request: Request, tenant: CurrentTenant, tasks: BackgroundTasks) -> None:
        async def job(session: AsyncSession) -> None:
            await session.execute(
                text("INSERT INTO products (name, price_cents, stock) VALUES (:n, 1, 1)"),
                {"n": f"stamped {tenant.slug}"},
            )

        schedule(tasks, request.state.db.sessionmaker, tenant, job)

    app.include_router(router)
    manager, running = await start_app(app=app)
    try:
        for t in (tenant_a, tenant_b):
            response = await running.client.post("/_jobs/stamp", headers=t.headers)
            assert response.status_code == 202
    finally:
        await stop_app(manager, running)
    async with engine.connect() as conn:
        for t in (tenant_a, tenant_b):
            names = (await conn.execute(text(f"SELECT name FROM {t.schema}.products"))).scalars()
            assert list(names) == [f"stamped {t.slug}"]
