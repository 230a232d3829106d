"""Leak fuzzing through the real app and pool, directly and behind PgBouncer in transaction
mode, with faults injected; plus the proof that the detector catches a real leak."""

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tenantsvc.deps import get_read_db, get_write_db
from tenantsvc.main import create_app
from tenantsvc.tenancy.provisioning import create_tenant
from tenantsvc.testing.app import stop_app
from tests.conftest import Running, make_settings, start_app
from tests.isolation import faults, fuzz
from tests.pgbouncer import pgbouncer

TENANTS = 24
PRODUCTS = 40
USERS = 5


@pytest.fixture(scope="module")
async def fuzz_tenants(engine: AsyncEngine, running: Running) -> list[fuzz.Tenant]:
    tag = uuid.uuid4().hex[:4]
    tenants = []
    for i in range(TENANTS):
        new = await create_tenant(engine, f"m{tag}{i:02d}")
        assert new.role is not None  # every transaction must run as it: whoami checks
        tenants.append(fuzz.Tenant(new.slug, new.schema, new.api_key, new.role))
    await running.state["registry"].refresh()
    for tenant in tenants:
        await fuzz.seed(running.client, tenant, PRODUCTS, USERS)
    return tenants


async def _started(url: str, **overrides: object) -> AsyncIterator[Running]:
    settings = make_settings(url, **{"pool_size": 8, "max_overflow": 4, **overrides})
    manager, running = await start_app(app=faults.mount(create_app(settings)))
    yield running
    await stop_app(manager, running)


def _assert_clean(report: fuzz.Report) -> None:
    assert report.leaks == [], report.leaks[:5]
    assert set(report.statuses) <= {200, 201, 204, 404, 409, 500, 503}, report.statuses
    assert report.ok > report.requests // 2, report.statuses


@pytest.fixture
async def direct_app(database_url: str) -> AsyncIterator[Running]:
    async for running in _started(database_url):
        yield running


async def _fuzz_then_check(app: Running, tenants: list[fuzz.Tenant], engine: AsyncEngine) -> None:
    """Fuzz with every fault, then a clean round (healthy again by itself), then look for a
    foreign row in every schema."""
    report = await fuzz.run(app.client, tenants, requests=1500, concurrency=32, killer=engine)
    _assert_clean(report)
    assert report.faults["terminate_backend"] > 0
    assert min(report.faults[f] for f in ("raise", "timeout", "cancel")) > 10
    after = await fuzz.run(app.client, tenants, requests=200, concurrency=16, faults=False)
    assert after.leaks == []
    assert set(after.statuses) <= {200, 201, 204, 409}, after.statuses
    assert await fuzz.foreign_rows(engine, tenants) == 0


async def test_leak_fuzz_direct(
    direct_app: Running, fuzz_tenants: list[fuzz.Tenant], engine: AsyncEngine
) -> None:
    await _fuzz_then_check(direct_app, fuzz_tenants, engine)


@pytest.fixture(scope="module")
def bouncer_url(admin_url: str, database_url: str) -> Iterator[str]:
    """Fewer server connections (4) than the app's pool (8 + 4 overflow)."""
    with pgbouncer(admin_url, make_url(database_url).database or "", pool_size=4) as url:
        yield url


@pytest.fixture
async def bounced_app(bouncer_url: str) -> AsyncIterator[Running]:
    async for running in _started(bouncer_url, pgbouncer=True):
        yield running


async def test_leak_fuzz_through_pgbouncer_transaction_mode(
    bounced_app: Running, fuzz_tenants: list[fuzz.Tenant], engine: AsyncEngine
) -> None:
    await _fuzz_then_check(bounced_app, fuzz_tenants, engine)


@pytest.fixture
async def leaky_app(bouncer_url: str) -> AsyncIterator[Running]:
    """The tutorial pattern: a session-level ``SET search_path``, then a commit, then the
    request's queries. Behind a transaction pooler those queries may run on another server
    connection, one that some other tenant's SET left behind."""
    app = faults.mount(create_app(make_settings(bouncer_url, pgbouncer=True, pool_size=8)))

    async def leaky_db(request: object) -> AsyncIterator[AsyncSession]:
        tenant = request.state.tenant  # type: ignore[attr-defined]
        maker: async_sessionmaker[AsyncSession] = request.state.db.sessionmaker  # type: ignore[attr-defined]
        async with maker() as session:
            await session.execute(text(f"SET search_path TO {tenant.schema}"))
            await session.commit()
            yield session
            await session.commit()

    from fastapi import Request

    async def override(request: Request) -> AsyncIterator[AsyncSession]:
        async for session in leaky_db(request):
            yield session

    app.dependency_overrides[get_write_db] = override
    app.dependency_overrides[get_read_db] = override
    manager, running = await start_app(app=app)
    yield running
    await stop_app(manager, running)


async def test_session_level_set_search_path_does_leak_behind_pgbouncer(
    leaky_app: Running, fuzz_tenants: list[fuzz.Tenant]
) -> None:
    report = await fuzz.run(
        leaky_app.client, fuzz_tenants, requests=600, concurrency=32, faults=False
    )
    assert len(report.leaks) > 0, "the detector must catch the tutorial pattern leaking"
