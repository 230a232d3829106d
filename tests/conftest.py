import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tenantsvc.db.engine import create_engine
from tenantsvc.main import create_app
from tenantsvc.settings import Settings
from tenantsvc.tenancy.fleet import migrate_shared
from tenantsvc.tenancy.provisioning import create_tenant
from tests.pg import postgres_server, with_database


@pytest.fixture(scope="session")
def admin_url() -> Iterator[str]:
    with postgres_server(os.environ.get("TENANTSVC_TEST_DATABASE_URL")) as url:
        yield url


async def _scratch_database(admin_url: str, prefix: str) -> AsyncIterator[str]:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
        # Durability is not under test; skipping the WAL flush keeps the suite fast.
        await conn.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
    yield with_database(admin_url, name)
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    await admin.dispose()


@pytest.fixture(scope="session")
async def database_url(admin_url: str) -> AsyncIterator[str]:
    """A fresh database per test session, dropped at the end."""
    async for url in _scratch_database(admin_url, "tenantsvc_test"):
        yield url


@pytest.fixture
async def empty_database_url(admin_url: str) -> AsyncIterator[str]:
    """A database of this test's own, empty (not even the shared track)."""
    async for url in _scratch_database(admin_url, "tenantsvc_empty"):
        yield url


@pytest.fixture
async def fresh_engine(empty_database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a database of this test's own, shared track migrated: for tests that
    change the whole fleet (revisions, the public schema) and must not disturb the others."""
    engine = create_engine(make_settings(empty_database_url))
    await migrate_shared(engine)
    yield engine
    await engine.dispose()


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "pool_size": 10,
        "max_overflow": 5,
        "pool_timeout_seconds": 10,
        "registry_poll_seconds": 0.2,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings)
    await migrate_shared(engine)
    yield engine
    await engine.dispose()


@dataclass(frozen=True)
class TenantHandle:
    slug: str
    schema: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Tenant-ID": self.slug, "Authorization": f"Bearer {self.api_key}"}


class TenantFactory(Protocol):
    async def __call__(self, prefix: str = "t") -> TenantHandle: ...


@pytest.fixture(scope="session")
def tenant_factory(engine: AsyncEngine) -> TenantFactory:
    async def make(prefix: str = "t") -> TenantHandle:
        new = await create_tenant(engine, f"{prefix}_{uuid.uuid4().hex[:10]}")
        return TenantHandle(new.slug, new.schema, new.api_key)

    return make


@pytest.fixture
async def tenant_a(tenant_factory: TenantFactory) -> TenantHandle:
    return await tenant_factory("a")


@pytest.fixture
async def tenant_b(tenant_factory: TenantFactory) -> TenantHandle:
    return await tenant_factory("b")


@dataclass
class Running:
    app: FastAPI
    state: dict[str, Any]
    client: httpx.AsyncClient


async def start_app(
    settings: Settings | None = None, app: FastAPI | None = None
) -> tuple[LifespanManager, Running]:
    app = app or create_app(settings)
    manager = LifespanManager(app)
    await manager.__aenter__()
    transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
    client = httpx.AsyncClient(transport=transport, base_url="http://tenantsvc.test")
    return manager, Running(app, manager._state, client)


@pytest.fixture(scope="session")
async def running(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Running]:
    manager, running = await start_app(settings)
    yield running
    await running.client.aclose()
    await manager.__aexit__(None, None, None)


@pytest.fixture
def client(running: Running) -> httpx.AsyncClient:
    return running.client
