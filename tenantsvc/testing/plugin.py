"""pytest fixtures for tenantsvc and apps built on it (needs pytest-asyncio).

Session-wide: a real PostgreSQL (``TENANTSVC_TEST_DATABASE_URL``, else testcontainers when a
Docker engine answers, else an embedded throwaway server), a fresh database with the shared
track migrated, and the app running in-process. Per test: ``tenant`` (a new tenant),
``tenant_client`` (an httpx client already carrying that tenant's headers) and
``tenant_session`` (a session in that tenant's schema, rolled back after the test).
"""

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tenantsvc.db.engine import create_engine
from tenantsvc.db.session import enter_tenant
from tenantsvc.main import create_app
from tenantsvc.settings import Settings
from tenantsvc.tenancy.fleet import migrate_shared
from tenantsvc.tenancy.provisioning import create_tenant
from tenantsvc.testing.app import (
    Running,
    TenantFactory,
    TenantHandle,
    make_settings,
    scratch_database,
    start_app,
    stop_app,
)
from tenantsvc.testing.postgres import postgres_server


@pytest.fixture(scope="session")
def tenantsvc_admin_url() -> Iterator[str]:
    with postgres_server(os.environ.get("TENANTSVC_TEST_DATABASE_URL")) as url:
        yield url


@pytest.fixture(scope="session")
async def tenantsvc_database_url(tenantsvc_admin_url: str) -> AsyncIterator[str]:
    """A database of this test session's own, dropped at the end."""
    async for url in scratch_database(tenantsvc_admin_url, "tenantsvc_test"):
        yield url


@pytest.fixture(scope="session")
def tenantsvc_settings(tenantsvc_database_url: str) -> Settings:
    return make_settings(tenantsvc_database_url)


@pytest.fixture(scope="session")
async def tenantsvc_engine(tenantsvc_settings: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine on the test database, whose shared track it migrated."""
    engine = create_engine(tenantsvc_settings)
    await migrate_shared(engine)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def tenantsvc_create_app() -> Callable[[Settings], FastAPI]:
    """How the app under test is built from its settings. Override it in your conftest.py to
    test your own routes: ``return lambda settings: create_app(settings, routers=[yours])``."""
    return create_app


@pytest.fixture(scope="session")
async def tenantsvc_app(
    tenantsvc_settings: Settings,
    tenantsvc_engine: AsyncEngine,
    tenantsvc_create_app: Callable[[Settings], FastAPI],
) -> AsyncIterator[Running]:
    manager, running = await start_app(tenantsvc_settings, tenantsvc_create_app(tenantsvc_settings))
    yield running
    await stop_app(manager, running)


@pytest.fixture(scope="session")
def tenant_factory(tenantsvc_engine: AsyncEngine) -> TenantFactory:
    async def make(prefix: str = "t") -> TenantHandle:
        new = await create_tenant(tenantsvc_engine, f"{prefix}_{uuid.uuid4().hex[:10]}")
        return TenantHandle.of(new)

    return make


@pytest.fixture
async def tenant(tenant_factory: TenantFactory) -> TenantHandle:
    return await tenant_factory()


@pytest.fixture
async def tenant_client(
    tenantsvc_app: Running, tenant: TenantHandle
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=tenantsvc_app.asgi, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://tenantsvc.test", headers=tenant.headers
    ) as client:
        yield client


@pytest.fixture
async def tenant_session(
    tenantsvc_engine: AsyncEngine, tenant: TenantHandle
) -> AsyncIterator[AsyncSession]:
    """A session in the tenant's schema, as the tenant's role like a request's; whatever the
    test writes is rolled back."""
    maker = async_sessionmaker(tenantsvc_engine, expire_on_commit=False)
    async with maker() as session, session.begin() as transaction:
        await enter_tenant(session, tenant.schema, tenant.role)
        yield session
        await transaction.rollback()
