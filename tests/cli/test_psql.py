"""``tenantctl psql``: a psql session in the tenant's schema, the one the registry names."""

import asyncio
import contextlib
import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
from pgserver._commands import POSTGRES_BIN_PATH
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from cli.psql import libpq_env, psql_binary
from tenantsvc.tenancy.lifecycle import archive
from tenantsvc.tenancy.provisioning import create_tenant
from tests.command import ROOT, TENANTCTL, tenantctl_process
from tests.polling import until_sql
from tests.tenancy.fleet_tenants import enter

ONE_PRODUCT = "INSERT INTO products (name, price_cents, stock) VALUES ('pen', 1, 1)"


def tenantctl(database_url: str, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """The installed command in a process of its own: psql takes over its terminal."""
    env = {**os.environ, "TENANTSVC_DATABASE_URL": database_url}
    env.update({f"TENANTSVC_{name.upper()}": value for name, value in settings.items()})
    env.pop("PGOPTIONS", None)
    return tenantctl_process(*args, env=env)


def answer(database_url: str, slug: str, sql: str, *extra: str) -> str:
    done = tenantctl(database_url, "psql", slug, *extra, "-X", "-At", "-c", sql)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
async def pair(engine: AsyncEngine) -> tuple[str, str]:
    """Two tenants, the first with one product."""
    first, second = (f"psql_{uuid.uuid4().hex[:8]}" for _ in range(2))
    schema = (await create_tenant(engine, first)).schema
    await create_tenant(engine, second)
    async with engine.begin() as conn:
        await enter(conn, schema)
        await conn.execute(text(ONE_PRODUCT))
    return first, second


def test_each_session_sees_its_own_tenant(database_url: str, pair: tuple[str, str]) -> None:
    first, second = pair
    assert answer(database_url, first, "SELECT count(*) FROM products") == "1"
    assert answer(database_url, second, "SELECT count(*) FROM products") == "0"
    assert answer(database_url, first, "SHOW search_path") == f"tenant_{first}"


def test_a_session_runs_as_the_tenants_role(database_url: str, pair: tuple[str, str]) -> None:
    """It sees what the tenant's requests see: another tenant's schema is refused."""
    first, second = pair
    assert answer(database_url, first, "SELECT current_user").startswith("tenantsvc_")
    done = tenantctl(database_url, "psql", first, "-X", "-c",
                     f"SELECT count(*) FROM tenant_{second}.products")  # fmt: skip
    assert done.returncode != 0
    assert "permission denied" in done.stderr


def test_read_only_sessions_refuse_writes(database_url: str, pair: tuple[str, str]) -> None:
    done = tenantctl(database_url, "psql", pair[1], "--read-only", "-X", "-c", ONE_PRODUCT)
    assert done.returncode != 0
    assert "read-only transaction" in done.stderr
    assert answer(database_url, pair[1], "SELECT count(*) FROM products") == "0"


async def test_an_archived_tenant_opens_where_its_schema_went(
    database_url: str, engine: AsyncEngine, pair: tuple[str, str]
) -> None:
    async with engine.begin() as conn:
        moved = (await archive(conn, pair[0])).archived_schema
    done = tenantctl(database_url, "psql", pair[0], "-X", "-At", "-c",
                     "SELECT current_schema(), count(*) FROM products")  # fmt: skip
    assert done.stdout.strip() == f"{moved}|1"
    assert f"note: tenant {pair[0]} is archived" in done.stderr


def test_an_unknown_tenant_is_one_line_and_psql_errors_keep_their_code(
    database_url: str, pair: tuple[str, str]
) -> None:
    unknown = tenantctl(database_url, "psql", "nobody_here", "-c", "SELECT 1")
    assert unknown.returncode == 1
    assert unknown.stderr.strip().count("\n") == 0
    assert "nobody_here" in unknown.stderr
    failed = tenantctl(database_url, "psql", pair[0], "-X", "-c", "SELECT * FROM nope")
    assert failed.returncode == 1
    assert 'relation "nope" does not exist' in failed.stderr


async def test_ctrl_c_cancels_the_query_not_the_command(
    database_url: str, engine: AsyncEngine, pair: tuple[str, str]
) -> None:
    """A terminal's Ctrl-C reaches the whole foreground group: psql cancels its query, and
    tenantctl waits for psql's exit instead of dying of the signal first."""
    env = {**os.environ, "TENANTSVC_DATABASE_URL": database_url}
    command = [*TENANTCTL, "psql", pair[0], "-X", "-c", "SELECT pg_sleep(30)"]
    process = await asyncio.create_subprocess_exec(
        *command, env=env, cwd=ROOT, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        await until_sql(engine, "SELECT count(*) > 0 FROM pg_stat_activity WHERE "
                        "application_name = 'tenantctl psql' AND query LIKE '%pg_sleep%'",
                        "psql never started its query")  # fmt: skip
        os.killpg(process.pid, signal.SIGINT)
        _, err = await asyncio.wait_for(process.communicate(), 20)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    stderr = err.decode()
    assert "canceling statement due to user request" in stderr
    assert "Traceback" not in stderr
    assert process.returncode == 1


def test_it_refuses_behind_pgbouncer(database_url: str) -> None:
    done = tenantctl(database_url, "psql", "anyone", pgbouncer="true")
    assert done.returncode == 1
    assert done.stderr.startswith("error: behind PgBouncer")
    assert done.stderr.count("\n") == 1


def test_the_connection_travels_in_libpq_variables() -> None:
    socket = "postgresql+asyncpg://postgres@/postgres?host=/run/pg"
    expected = {"PGHOST": "/run/pg", "PGUSER": "postgres", "PGDATABASE": "postgres"}
    assert libpq_env(socket) == expected
    tcp = "postgresql+asyncpg://app:s%40cret@db.internal:6432/main?ssl=verify-full"
    assert libpq_env(tcp) == {"PGHOST": "db.internal", "PGPORT": "6432", "PGUSER": "app",
                              "PGPASSWORD": "s@cret", "PGDATABASE": "main",
                              "PGSSLMODE": "verify-full"}  # fmt: skip


def test_without_psql_on_the_path_the_embedded_servers_own_serves(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert Path(psql_binary()) == Path(POSTGRES_BIN_PATH) / "psql"
