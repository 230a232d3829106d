"""The suite runs on the same plugin app authors use (``tenantsvc.testing.plugin``), under
shorter names, plus fixtures of its own for tests that need a database to themselves."""

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantsvc.db.engine import create_engine
from tenantsvc.settings import Settings
from tenantsvc.tenancy.fleet import migrate_shared
from tenantsvc.testing.app import (
    Running,
    TenantFactory,
    TenantHandle,
    make_settings,
    scratch_database,
    start_app,
)

pytest_plugins = ["tenantsvc.testing.plugin", "pytester"]

__all__ = ["Running", "TenantFactory", "TenantHandle", "make_settings", "start_app"]


@pytest.fixture(scope="session")
def admin_url(tenantsvc_admin_url: str) -> str:
    return tenantsvc_admin_url


@pytest.fixture(scope="session")
def database_url(tenantsvc_database_url: str) -> str:
    return tenantsvc_database_url


@pytest.fixture(scope="session")
def settings(tenantsvc_settings: Settings) -> Settings:
    return tenantsvc_settings


@pytest.fixture(scope="session")
def engine(tenantsvc_engine: AsyncEngine) -> AsyncEngine:
    return tenantsvc_engine


@pytest.fixture(scope="session")
def running(tenantsvc_app: Running) -> Running:
    return tenantsvc_app


@pytest.fixture
def client(running: Running) -> httpx.AsyncClient:
    return running.client


@pytest.fixture
async def empty_database_url(admin_url: str) -> AsyncIterator[str]:
    """A database of this test's own, empty (not even the shared track)."""
    async for url in scratch_database(admin_url, "tenantsvc_empty"):
        yield url


@pytest.fixture
async def fresh_engine(empty_database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a database of this test's own, shared track migrated: for tests that
    change the whole fleet (revisions, the public schema) and must not disturb the others."""
    engine = create_engine(make_settings(empty_database_url))
    await migrate_shared(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
async def tenant_a(tenant_factory: TenantFactory) -> TenantHandle:
    return await tenant_factory("a")


@pytest.fixture
async def tenant_b(tenant_factory: TenantFactory) -> TenantHandle:
    return await tenant_factory("b")
