"""The long leak-fuzzing run (the test suite runs a bounded one): many tenants, ≥100,000
requests with faults injected, directly and behind PgBouncer in transaction mode.

    REQUESTS=100000 CONCURRENCY=64 TENANTS=24 MODE=both python -m bench.leakfuzz

The last line is a JSON summary: requests, statuses, faults injected, leaks and foreign rows
found (both must be 0).
"""

import asyncio
import json
import os
import sys
import time
import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tenantsvc.db.engine import create_engine
from tenantsvc.main import create_app
from tenantsvc.tenancy.fleet import migrate_shared
from tenantsvc.tenancy.provisioning import create_tenant
from tenantsvc.testing.app import make_settings, start_app, stop_app
from tenantsvc.testing.postgres import postgres_server, with_database
from tests.isolation import faults, fuzz
from tests.pgbouncer import pgbouncer

CHUNK = 10_000


async def _prepare(admin_url: str, count: int) -> tuple[str, list[fuzz.Tenant]]:
    name = f"leakfuzz_{uuid.uuid4().hex[:6]}"
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    url = with_database(admin_url, name)
    engine = create_engine(make_settings(url))
    await migrate_shared(engine)
    made = [await create_tenant(engine, f"m{i:03d}") for i in range(count)]
    await engine.dispose()
    return url, [fuzz.Tenant(t.slug, t.schema, t.api_key, t.role) for t in made]


async def _campaign(url: str, direct: str, tenants: list[fuzz.Tenant], requests: int,
                    concurrency: int, seeded: bool, **settings: Any) -> dict[str, Any]:  # fmt: skip
    """Fuzz through ``url`` (PostgreSQL or PgBouncer); the fault injector and the final check
    of every schema talk to PostgreSQL directly (``direct``)."""
    tuned = make_settings(url, pool_size=10, max_overflow=5, **settings)
    app = faults.mount(create_app(tuned))
    manager, running = await start_app(app=app)
    killer = create_engine(make_settings(direct, pool_size=1, max_overflow=0))
    total = fuzz.Report()
    started = time.perf_counter()
    try:
        if not seeded:
            for tenant in tenants:
                await fuzz.seed(running.client, tenant, products=50, users=5)
        for done in range(0, requests, CHUNK):
            size = min(CHUNK, requests - done)
            part = await fuzz.run(
                running.client, tenants, requests=size, concurrency=concurrency,
                killer=killer, seed_value=done,
            )  # fmt: skip
            total.requests += part.requests
            total.ok += part.ok
            total.statuses.update(part.statuses)
            total.faults.update(part.faults)
            total.leaks += part.leaks
            print(f"{total.requests} requests, {len(total.leaks)} leaks", file=sys.stderr)
        total.foreign_rows = await fuzz.foreign_rows(killer, tenants)
    finally:
        await killer.dispose()
        await stop_app(manager, running)
    return {
        "requests": total.requests, "ok": total.ok,
        "seconds": round(time.perf_counter() - started, 1),
        "statuses": dict(total.statuses), "faults": dict(total.faults),
        "leaks": len(total.leaks), "leak_examples": total.leaks[:3],
        "foreign_rows": total.foreign_rows,
    }  # fmt: skip


def main() -> None:
    requests = int(os.environ.get("REQUESTS", "100000"))
    concurrency = int(os.environ.get("CONCURRENCY", "64"))
    count = int(os.environ.get("TENANTS", "24"))
    mode = os.environ.get("MODE", "both")
    result: dict[str, Any] = {"tenants": count, "concurrency": concurrency}
    with postgres_server(os.environ.get("TENANTSVC_TEST_DATABASE_URL")) as admin_url:
        url, tenants = asyncio.run(_prepare(admin_url, count))
        seeded = False
        if mode in ("direct", "both"):
            result["direct"] = asyncio.run(
                _campaign(url, url, tenants, requests, concurrency, seeded)
            )
            seeded = True
        if mode in ("pgbouncer", "both"):
            with pgbouncer(admin_url, make_url(url).database or "", pool_size=5) as bounced:
                result["pgbouncer"] = asyncio.run(
                    _campaign(bounced, url, tenants, requests, concurrency, seeded, pgbouncer=True)
                )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
