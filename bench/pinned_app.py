"""The same app with tenancy bypassed, the baseline of the tenancy overhead: no tenant
middleware, no registry, no per-transaction set_config (the hot paths get their connection in a
plain BEGIN); every connection opens with its search_path pinned to one tenant's schema
(``BENCH_PIN_SCHEMA``). Requests still carry tenant headers, which are ignored.

    uvicorn bench.pinned_app:app
"""

import os
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession

from tenantsvc.db.session import Database
from tenantsvc.deps import get_read_conn, get_read_db, get_tenant, get_write_conn, get_write_db
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


async def _pinned_connection(request: Request) -> AsyncIterator[Any]:
    """The hot paths' raw connection, in a plain transaction: no set_config."""
    database: Database = request.state.db
    async with database.engine.connect() as conn:
        driver: Any = (await conn.get_raw_connection()).driver_connection
        await driver.execute("BEGIN")
        try:
            yield driver
        except BaseException:
            await driver.execute("ROLLBACK")
            raise
        await driver.execute("COMMIT")


app = create_app()
app.user_middleware = [m for m in app.user_middleware if m.cls is not TenantMiddleware]  # type: ignore[comparison-overlap]


async def _pinned_tenant() -> Tenant:
    return PINNED


app.dependency_overrides[get_tenant] = _pinned_tenant
app.dependency_overrides[get_write_db] = _pinned_session
app.dependency_overrides[get_read_db] = _pinned_session
app.dependency_overrides[get_write_conn] = _pinned_connection
app.dependency_overrides[get_read_conn] = _pinned_connection
