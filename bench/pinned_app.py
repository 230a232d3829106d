"""The same app with tenancy bypassed, the baseline of the tenancy overhead: no tenant
resolution (a middleware puts one fixed tenant in every request's state), no registry lookups,
no per-transaction search_path (the hot paths get their connection in a BEGIN with the same
planner settings, through the same dependencies and plain routes as the real app); every
connection opens with its search_path pinned to one tenant's schema (``BENCH_PIN_SCHEMA``).
Requests still carry tenant headers, which are ignored.

    uvicorn bench.pinned_app:app
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Request
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from tenantsvc import deps
from tenantsvc.db.session import BEGIN_HOT, Database, pooled_connection
from tenantsvc.deps import get_read_db, get_write_db
from tenantsvc.main import create_app
from tenantsvc.tenancy.middleware import TenantMiddleware
from tenantsvc.tenancy.registry import Tenant

SCHEMA = os.environ.get("BENCH_PIN_SCHEMA", "tenant_t00000")
PINNED = Tenant(0, SCHEMA.removeprefix("tenant_"), SCHEMA, "active")


@event.listens_for(Engine, "connect")
def _pin(dbapi_connection: Any, _: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"SET search_path TO {SCHEMA}")
    cursor.close()
    dbapi_connection.commit()  # the driver adapter opened a transaction for the SET


async def _pinned_session(request: Request) -> AsyncIterator[AsyncSession]:
    database: Database = request.state.db
    async with database.sessionmaker() as session, session.begin():
        yield session


@asynccontextmanager
async def _pinned_connection(engine: AsyncEngine, *_: object) -> AsyncIterator[Any]:
    """Stands in for ``tenant_connection``: the same planner settings, no search_path."""
    async with pooled_connection(engine) as fairy:
        driver: Any = fairy.driver_connection
        await driver.execute(BEGIN_HOT)
        try:
            yield driver
        except BaseException:
            await driver.execute("ROLLBACK")
            raise
        await driver.execute("COMMIT")


class _PinnedTenant:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope["state"] = {**scope["state"], "tenant": PINNED}
        await self.app(scope, receive, send)


deps.tenant_connection = _pinned_connection  # type: ignore[attr-defined,assignment]
app = create_app()
app.user_middleware = [
    Middleware(_PinnedTenant) if m.cls is TenantMiddleware else m  # type: ignore[comparison-overlap]
    for m in app.user_middleware
]
app.dependency_overrides[get_write_db] = _pinned_session
app.dependency_overrides[get_read_db] = _pinned_session
