"""The deployment files, checked here because this machine has no Docker engine: compose.yaml
and the Dockerfile by structure, and the compose topology run for real as processes
(PostgreSQL, PgBouncer in transaction mode, the migration job, the app)."""

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import asyncpg
import httpx
import pytest
import yaml
from sqlalchemy.engine import make_url

from tenantsvc.tenancy.roles import role_prefix
from tenantsvc.testing.app import SCRAPE, SCRAPER_TOKEN, wait_for_http
from tenantsvc.testing.postgres import free_port
from tests.command import tenantctl_process
from tests.pgbouncer import pgbouncer
from tests.raw import raw_connection

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def test_compose_topology(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "pgbouncer", "migrate", "app"}
    assert services["pgbouncer"]["environment"]["POOL_MODE"] == "transaction"
    migrate_url = make_url(services["migrate"]["environment"]["TENANTSVC_DATABASE_URL"])
    assert migrate_url.host == "postgres"  # migrations bypass PgBouncer
    migrate = services["migrate"]["command"]
    assert migrate[:2] == ["sh", "-c"]
    assert migrate[2].split(" && ") == [
        "tenantctl migrate-all",
        "tenantctl service-role tenantsvc_api --password-env TENANTSVC_API_PASSWORD",
    ]
    app_env = services["app"]["environment"]
    app_url = make_url(app_env["TENANTSVC_DATABASE_URL"])
    assert app_url.host == "pgbouncer"
    # The app logs in as the service role, which PgBouncer knows, not as the superuser.
    assert app_url.username == services["pgbouncer"]["environment"]["DB_USER"] == "tenantsvc_api"
    assert "TENANTSVC_API_PASSWORD" in services["migrate"]["environment"]
    assert app_env["TENANTSVC_PGBOUNCER"] == "true"
    assert app_env["TENANTSVC_METRICS_TOKEN"] == "${TENANTSVC_METRICS_TOKEN:-}"  # unset: off
    assert services["app"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name in ("postgres", "pgbouncer", "app"):
        assert "test" in services[name]["healthcheck"], name
    for name in ("migrate", "app"):
        assert services[name]["build"] == "."


def test_compose_config_when_a_client_can() -> None:
    if (
        shutil.which("docker") is None
        or subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False
        ).returncode
        != 0
    ):
        pytest.skip("no `docker compose` here; the structural test above stands in")
    env = {**os.environ, "POSTGRES_PASSWORD": "x"}
    done = subprocess.run(["docker", "compose", "-f", str(ROOT / "compose.yaml"), "config", "-q"],
                          env=env, capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_dockerfile_is_slim_non_root_and_without_dev_dependencies() -> None:
    text = (ROOT / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    bases = [line.split()[1] for line in lines if line.startswith("FROM")]
    assert all(base.startswith("python:3.11-slim") for base in bases)
    users = [line for line in lines if line.startswith("USER ")]
    assert users
    assert users[-1] not in ("USER root", "USER 0")
    assert "[dev]" not in text
    assert "[testing]" not in text
    assert "TENANTSVC_ALEMBIC_INI" in text


def _tenantctl(env: dict[str, str], *args: str) -> str:
    done = tenantctl_process(*args, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


class Topology(NamedTuple):
    url: str  # the app, through PgBouncer
    direct_env: dict[str, str]  # tenantctl's environment: PostgreSQL itself, as the owner
    role: str  # the service role the app logs in as
    bounced: str  # PgBouncer's URL


SERVICE_PASSWORD = "s3cret 'quoted' pässword"


@pytest.fixture
def app_process(empty_database_url: str, admin_url: str) -> Iterator[Topology]:
    """compose.yaml as processes: the migrate job (migrations, then the service role with its
    password), PgBouncer checking that password, the app connected through it as that role."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("TENANTSVC_")}
    direct = {**base, "TENANTSVC_DATABASE_URL": empty_database_url}
    database = make_url(empty_database_url).database or ""
    role = role_prefix(database) + "api"  # dropped with the test database
    _tenantctl(direct, "migrate-all")
    _tenantctl({**direct, "API_PASSWORD": SERVICE_PASSWORD},
               "service-role", role, "--password-env", "API_PASSWORD")  # fmt: skip
    with pgbouncer(admin_url, database, pool_size=3, scram=True) as bounced:
        as_role = make_url(bounced).set(username=role, password=SERVICE_PASSWORD)
        port = free_port()
        env = {**base, "TENANTSVC_PGBOUNCER": "true", "TENANTSVC_POOL_SIZE": "8",
               "TENANTSVC_WORKERS": "2", "TENANTSVC_METRICS_TOKEN": SCRAPER_TOKEN,
               "TENANTSVC_DATABASE_URL": as_role.render_as_string(hide_password=False)}  # fmt: skip
        server = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", "--port", str(port)],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_for_http(f"http://127.0.0.1:{port}/readyz", server)
            yield Topology(f"http://127.0.0.1:{port}", direct, role, bounced)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)


def test_topology_runs_as_processes(app_process: Topology) -> None:
    base_url, direct = app_process.url, app_process.direct_env
    created = json.loads(_tenantctl(direct, "create", "compose_co", "--json"))
    headers = {"X-Tenant-ID": "compose_co", "Authorization": f"Bearer {created['api_key']}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=10) as client:
        user = client.post("/users", json={"email": "c@co.io", "name": "C"})
        product = client.post("/products", json={"name": "p", "price_cents": 5, "stock": 2})
        assert (user.status_code, product.status_code) == (201, 201)
        line = {"product_id": product.json()["id"], "quantity": 2}
        order = client.post("/orders", json={"user_id": user.json()["id"], "items": [line]})
        assert order.status_code == 201, order.text
        assert order.json()["total_cents"] == 10
        assert client.get(f"/products/{product.json()['id']}").json()["stock"] == 0
        metrics = client.get("/metrics", headers=SCRAPE).text
        assert 'route="/orders",status="201"' in metrics


async def _login(url: str, user: str, password: str) -> str:
    async with raw_connection(url, username=user, password=password) as conn:
        return str(await conn.fetchval("SELECT current_user"))


async def test_the_service_logs_in_through_pgbouncer_as_its_role_with_its_password(
    app_process: Topology,
) -> None:
    """The password set by service-role --password-env is the one PgBouncer accepts (its
    SCRAM verifier was made client-side), a wrong one is refused, and the server's sessions
    behind the app are the service role's."""
    base_url, role, bounced = app_process.url, app_process.role, app_process.bounced
    assert await _login(bounced, role, SERVICE_PASSWORD) == role
    with pytest.raises(asyncpg.PostgresError, match="authentication failed"):  # PgBouncer's 08P01
        await _login(bounced, role, SERVICE_PASSWORD + "x")
    async with httpx.AsyncClient(base_url=base_url) as client:
        assert (await client.get("/readyz")).status_code == 200
    async with raw_connection(app_process.direct_env["TENANTSVC_DATABASE_URL"]) as admin:
        users = await admin.fetch(
            "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid() "
            "AND usename <> 'postgres'"
        )
    assert [u["usename"] for u in users] == [role]
