"""README's "Routes of your own" and "Testing your app", as an app author's project would have
them: a router of its own on tenantsvc's app, tested through the plugin's fixtures. It runs
as a pytest session of its own (``pytester``), from files written here, on this session's
PostgreSQL server."""

import pytest

CONFTEST = """
import pytest

from reports import router
from tenantsvc.main import create_app

pytest_plugins = ["tenantsvc.testing.plugin"]


@pytest.fixture(scope="session")
def tenantsvc_create_app():
    return lambda settings: create_app(settings, routers=[router])
"""

REPORTS = '''
from fastapi import APIRouter
from sqlalchemy import text

from tenantsvc.deps import ReadDbSession
from tenantsvc.tenant_routes import TenantRoute

router = APIRouter(prefix="/reports", route_class=TenantRoute)


@router.get("/stock")
async def stock(session: ReadDbSession) -> dict[str, int]:
    """Units in stock over the tenant's live products: its schema, as its role."""
    live = "SELECT coalesce(sum(stock), 0) FROM products WHERE deleted_at IS NULL"
    return {"units": int(await session.scalar(text(live)))}
'''

TEST = """
async def test_a_report_is_the_tenants_own(tenant_client, tenant_factory):
    product = {"name": "lamp", "price_cents": 1200, "stock": 3}
    assert (await tenant_client.post("/products", json=product)).status_code == 201
    assert (await tenant_client.get("/reports/stock")).json() == {"units": 3}
    other = await tenant_factory()
    theirs = await tenant_client.get("/reports/stock", headers=other.headers)
    assert theirs.json() == {"units": 0}
    unknown = await tenant_client.get("/reports/stock", params={"since": "2026"})
    assert unknown.status_code == 422  # TenantRoute: a parameter the route does not take
    keyless = await tenant_client.get("/reports/stock", headers={"Authorization": ""})
    assert keyless.status_code == 401
"""

INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = session
asyncio_default_test_loop_scope = session
"""


def test_an_app_authors_own_routes_run_on_the_plugin(
    pytester: pytest.Pytester, admin_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(reports=REPORTS, test_reports=TEST)
    pytester.makeini(INI)
    monkeypatch.setenv("TENANTSVC_TEST_DATABASE_URL", admin_url)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
