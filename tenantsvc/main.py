"""The ASGI app: ``tenantsvc.main:app``, or ``create_app(settings)`` for tests and tools, and
``create_app(routers=[...])`` for an app built on it."""

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI

from tenantsvc import __version__, api_docs, cors, health, problems
from tenantsvc.collector import tune_collector
from tenantsvc.db.session import Database
from tenantsvc.head import HeadAsGetMiddleware
from tenantsvc.limits import BodyLimitMiddleware
from tenantsvc.observability.metrics import sample_pools
from tenantsvc.observability.middleware import RequestMiddleware
from tenantsvc.orders.router import router as orders_router
from tenantsvc.products.router import router as products_router
from tenantsvc.settings import Settings, get_settings
from tenantsvc.tenancy.activity import Activity
from tenantsvc.tenancy.middleware import TenantMiddleware
from tenantsvc.tenancy.migrator import head
from tenantsvc.tenancy.registry import TenantRegistry
from tenantsvc.users.router import router as users_router


def create_app(settings: Settings | None = None, routers: Sequence[APIRouter] = ()) -> FastAPI:
    """``routers``: an app author's own, served after the built-in routes, behind the same
    middleware (tenant, key, body bounds, problems); give them ``route_class=TenantRoute``."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        resolved = settings or get_settings()
        database = Database(resolved)
        registry = TenantRegistry(database.engine, resolved.registry_poll_seconds)
        activity = Activity(database.engine, resolved.usage_flush_seconds)
        sampler = asyncio.create_task(
            sample_pools(database.engines(), resolved.metrics_sample_seconds), name="pool-gauges"
        )
        try:
            await database.start()
            await registry.start()
            activity.start()
            tune_collector(resolved.gc_young_threshold, resolved.gc_freeze)
            yield {
                "db": database,
                "registry": registry,
                "activity": activity,
                "shared_head": head("shared"),
                "metrics_token": resolved.metrics_token,
            }
        finally:
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
            await registry.stop()
            await activity.stop()
            await database.dispose()

    # No redirect from /products/ to /products: Starlette builds its Location from the Host
    # header and the scheme uvicorn saw, so behind a TLS proxy it sent clients to http://,
    # where one that follows it sends its API key in clear. A 404 names the path instead.
    app = FastAPI(title="tenantsvc", version=__version__, lifespan=lifespan, redirect_slashes=False)
    problems.install(app)
    api_docs.document(app)
    app.add_middleware(TenantMiddleware)
    configured = settings or get_settings()
    app.add_middleware(BodyLimitMiddleware, max_bytes=configured.max_body_bytes)
    app.add_middleware(HeadAsGetMiddleware)
    cors.allow_origins(app, configured)  # outside the tenant checks: preflights carry no tenant
    # Outermost: every request gets an id, a log line and metrics, refused ones included.
    app.add_middleware(RequestMiddleware, max_tenant_labels=configured.metrics_max_tenant_labels)
    # Routes are matched in order: the hot ones first.
    for router in (products_router, orders_router, users_router, health.router, *routers):
        app.include_router(router)
    return app


app = create_app()
