"""The service connected as a role of its own: it serves every tenant, and holds no tenant's
data itself (a statement that skips the tenant's role is refused)."""

import asyncio
import json

import asyncpg
import pytest
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from cli.main import app
from tenantsvc.settings import get_settings
from tenantsvc.tenancy.doctor import Check, check_service_role
from tenantsvc.tenancy.errors import TenancyError
from tenantsvc.tenancy.provisioning import create_tenant
from tenantsvc.tenancy.roles import role_prefix
from tenantsvc.tenancy.service_role import READS, WITHHELD, WRITES, create_service_role
from tenantsvc.testing.app import running_app
from tests.command import tenantctl_process
from tests.conftest import make_settings
from tests.raw import raw_connection

DENIED = "permission denied"


async def _service_role(engine: AsyncEngine, url: str) -> tuple[str, str]:
    """The role's name (under the database's role prefix, so the test database's cleanup drops
    it), and the URL that connects as it."""
    async with engine.connect() as conn:
        database = str(await conn.scalar(text("SELECT current_database()")))
    name = role_prefix(database) + "api"
    url_as_role = make_url(url).set(username=name, password=None)
    return name, url_as_role.render_as_string(hide_password=False)


async def test_the_service_role_serves_every_tenant_and_holds_no_data(
    fresh_engine: AsyncEngine, empty_database_url: str
) -> None:
    alpha = await create_tenant(fresh_engine, "alpha")
    name, url = await _service_role(fresh_engine, empty_database_url)
    assert await create_service_role(fresh_engine, name) == 1
    assert await create_service_role(fresh_engine, name) == 1  # again: nothing changes
    beta = await create_tenant(fresh_engine, "beta")  # after: its role joins the group at once

    async with running_app(make_settings(url)) as running:
        assert (await running.client.get("/readyz")).status_code == 200
        for tenant in (alpha, beta):
            headers = {"X-Tenant-ID": tenant.slug, "Authorization": f"Bearer {tenant.api_key}"}
            product = {"name": "Lamp", "price_cents": 900, "stock": 3}
            created = await running.client.post("/products", json=product, headers=headers)
            assert created.status_code == 201, created.text
            user = {"email": f"ann@{tenant.slug}.io", "name": "Ann"}
            buyer = await running.client.post("/users", json=user, headers=headers)
            order = {"user_id": buyer.json()["id"],
                     "items": [{"product_id": created.json()["id"], "quantity": 2}]}  # fmt: skip
            placed = await running.client.post("/orders", json=order, headers=headers)
            assert placed.status_code == 201, placed.text
            page = await running.client.get("/products", headers=headers)
            assert [p["stock"] for p in page.json()["items"]] == [1]
        assert await running.state["activity"].flush() == 8  # the workers' record, too

    async with raw_connection(url) as conn:
        for sql in ("SELECT count(*) FROM tenant_alpha.products",
                    "SELECT count(*) FROM tenant_beta.orders",
                    "SELECT count(*) FROM tenantsvc.tenant_events",
                    "UPDATE tenantsvc.tenants SET status = 'active'"):  # fmt: skip
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match=DENIED):
                await conn.execute(sql)
        async with conn.transaction():
            role = await conn.fetchval(
                "SELECT role_name FROM tenantsvc.tenants WHERE slug = 'alpha'"
            )
            await conn.execute(f'SET LOCAL ROLE "{role}"')
            assert await conn.fetchval("SELECT count(*) FROM tenant_alpha.products") == 1


async def test_a_superuser_or_the_owner_is_refused(fresh_engine: AsyncEngine) -> None:
    async with fresh_engine.connect() as conn:
        me = str(await conn.scalar(text("SELECT current_user")))
    with pytest.raises(TenancyError, match="a role of its own"):
        await create_service_role(fresh_engine, me)


async def test_a_tenants_role_or_the_serving_group_is_refused(fresh_engine: AsyncEngine) -> None:
    """Made the service's role, a tenant's role would log in and reach every tenant through
    the serving group: refused in a line, where PostgreSQL refused only the circular grant,
    with a traceback, and left the role as it was."""
    new = await create_tenant(fresh_engine, "own_role")
    assert new.role is not None
    group = f"{role_prefix(make_url(str(fresh_engine.url)).database or '')}serve"
    for name in (new.role, group):
        with pytest.raises(TenancyError, match="is one tenantsvc made"):
            await create_service_role(fresh_engine, name)
    async with fresh_engine.connect() as conn:
        login = await conn.scalar(text("SELECT rolcanlogin FROM pg_roles WHERE rolname = :r"),
                                  {"r": new.role})  # fmt: skip
    assert login is False


async def _doctor(engine: AsyncEngine) -> Check:
    async with engine.connect() as conn:
        return await check_service_role(conn)


async def test_doctor_names_the_tenants_a_service_role_cannot_serve(
    fresh_engine: AsyncEngine, empty_database_url: str
) -> None:
    assert "none" in (await _doctor(fresh_engine)).detail
    await create_tenant(fresh_engine, "roled")
    name, _ = await _service_role(fresh_engine, empty_database_url)
    await create_service_role(fresh_engine, name)
    found = await _doctor(fresh_engine)
    assert (found.status, found.detail) == ("ok", f"{name} may serve every tenant, as the "
                                            "tenant's role")  # fmt: skip
    await create_tenant(fresh_engine, "roleless", with_role=False)
    found = await _doctor(fresh_engine)
    assert found.status == "fail"
    assert "roleless" in found.detail
    assert "roled," not in found.detail


def test_the_command_is_one_line_either_way(
    fresh_engine: AsyncEngine, empty_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENANTSVC_DATABASE_URL", empty_database_url)
    get_settings.cache_clear()
    try:
        for bad in ("Bad-Name", "pg_reserved"):  # the second refused by PostgreSQL itself
            refused = CliRunner().invoke(app, ["service-role", bad])
            assert refused.exit_code == 1, refused.exception
            assert refused.stderr.startswith("error: "), refused.stderr
            assert refused.stderr.count("\n") == 1
        unset = tenantctl_process(  # the installed command: usage errors are one line there
            "service-role", "tenantsvc_cli_api", "--password-env", "TENANTSVC_TEST_UNSET"
        )
        assert unset.returncode == 2
        assert "TENANTSVC_TEST_UNSET is not set or empty" in unset.stderr
        assert unset.stderr.count("\n") == 1
        made = CliRunner().invoke(app, ["service-role", "tenantsvc_cli_api", "--json"])
        assert made.exit_code == 0, made.output
        assert json.loads(made.stdout) == {"role": "tenantsvc_cli_api", "tenant_roles": 0}
    finally:
        get_settings.cache_clear()
        asyncio.run(_drop_role(empty_database_url, "tenantsvc_cli_api"))


async def _drop_role(url: str, name: str) -> None:
    """A role outside the database's prefix outlives the test database: dropped here."""
    async with raw_connection(url) as conn:
        await conn.execute(f'DROP OWNED BY "{name}"; DROP ROLE "{name}"')


async def test_every_registry_table_is_granted_to_the_service_role_or_withheld(
    fresh_engine: AsyncEngine,
) -> None:
    """A shared migration that adds a table must say whether the service may use it: the
    rights are a list in code, and a table in none of its lists would be refused to the service
    (or granted by mistake, were the lists built from the schema)."""
    async with fresh_engine.connect() as conn:
        tables = await conn.scalars(text(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'tenantsvc'"
        ))  # fmt: skip
        found = set(tables)
    assert found == {*READS, *WRITES, *WITHHELD}
    assert not {*READS, *WRITES} & set(WITHHELD)
