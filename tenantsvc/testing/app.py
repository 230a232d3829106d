"""Building blocks of the plugin, usable on their own: settings for tests, the app started
in-process with its lifespan, tenants as handles with ready-made headers."""

import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from tenantsvc.main import create_app
from tenantsvc.settings import Settings
from tenantsvc.tenancy.roles import role_prefix
from tenantsvc.testing.postgres import with_database

if TYPE_CHECKING:
    from tenantsvc.tenancy.provisioning import NewTenant

SCRAPER_TOKEN = "scraper-token-for-tests"  # noqa: S105 (the app's /metrics, for a test's scrape)
SCRAPE = {"Authorization": f"Bearer {SCRAPER_TOKEN}"}


def make_settings(database_url: str, **overrides: Any) -> Settings:
    """Settings for tests: a small pool, a fast registry poll, and the interpreter's garbage
    collector left alone (a test process starts many apps; freezing each one's objects would
    keep those that end up in reference cycles alive to the end of the session)."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "pool_size": 10,
        "max_overflow": 5,
        "pool_timeout_seconds": 10,
        "registry_poll_seconds": 0.2,
        "gc_young_threshold": 0,
        "gc_freeze": False,
        "metrics_token": SCRAPER_TOKEN,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass(frozen=True)
class TenantHandle:
    slug: str
    schema: str
    api_key: str
    role: str | None = None  # the tenant's own database role, when it has one

    @classmethod
    def of(cls, new: "NewTenant") -> "TenantHandle":
        """The handle of a tenant ``create_tenant`` just made."""
        return cls(new.slug, new.schema, new.api_key, new.role)

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Tenant-ID": self.slug, "Authorization": f"Bearer {self.api_key}"}


class TenantFactory(Protocol):
    async def __call__(self, prefix: str = "t") -> TenantHandle: ...


@dataclass
class Running:
    app: FastAPI
    state: dict[str, Any]
    client: httpx.AsyncClient
    asgi: Any  # the app as served: with its lifespan state injected into each request


async def start_app(
    settings: Settings | None = None, app: FastAPI | None = None
) -> tuple[LifespanManager, Running]:
    """The app with its lifespan run, and an httpx client speaking ASGI to it."""
    app = app or create_app(settings)
    manager = LifespanManager(app)
    await manager.__aenter__()
    transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
    client = httpx.AsyncClient(transport=transport, base_url="http://tenantsvc.test")
    return manager, Running(app, manager._state, client, manager.app)


async def stop_app(manager: LifespanManager, running: Running) -> None:
    await running.client.aclose()
    await manager.__aexit__(None, None, None)


@asynccontextmanager
async def running_app(
    settings: Settings | None = None, app: FastAPI | None = None
) -> AsyncIterator[Running]:
    """``start_app`` for the length of a block, stopped however the block ends."""
    manager, running = await start_app(settings, app)
    try:
        yield running
    finally:
        await stop_app(manager, running)


async def scratch_database(admin_url: str, prefix: str) -> AsyncIterator[str]:
    """A new database on the server, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
        # Durability is not under test; skipping the WAL flush keeps suites fast.
        await conn.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
    try:
        yield with_database(admin_url, name)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            await drop_roles_of(conn, name)
        await admin.dispose()


async def drop_roles_of(conn: AsyncConnection, database: str) -> None:
    """Tenant roles belong to the cluster: a dropped database's would outlive it."""
    pattern = role_prefix(database).replace("_", "\\_") + "%"
    query = text("SELECT rolname FROM pg_roles WHERE rolname LIKE :p")
    found = await conn.execute(query, {"p": pattern})
    for role in found.scalars().all():
        await conn.execute(text(f'DROP ROLE "{role}"'))


def wait_for_http(
    url: str,
    process: subprocess.Popen[bytes],
    timeout_seconds: float = 60,
    headers: dict[str, str] | None = None,
) -> None:
    """Poll ``url`` (with ``headers``) until it answers 200; fail early if the server process
    died."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            if httpx.get(url, headers=headers, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}) before {url} answered")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer 200 within {timeout_seconds} s")
        time.sleep(0.2)


def pool_checkouts(metrics: str, pool: str = "primary") -> dict[str, float]:
    """Tenant checkouts of ``pool`` in a ``/metrics`` body, by what they found (home, warm,
    cold)."""
    return {sample.labels["found"]: sample.value
            for family in text_string_to_metric_families(metrics)
            for sample in family.samples
            if sample.name == "tenantsvc_pool_tenant_checkouts"
            and sample.labels.get("pool") == pool}  # fmt: skip
