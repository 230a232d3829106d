"""Migrating the whole fleet: the shared track first, then every tenant in its own transaction.

A tenant either reaches the target revision or stays untouched; one tenant's failure is
recorded and the others go on, so a re-run resumes where this one stopped.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantsvc.tenancy.migrator import current_revision, upgrade_shared, upgrade_tenant
from tenantsvc.tenancy.models import TenantRow, TenantStatus


@dataclass
class TenantOutcome:
    slug: str
    schema: str
    before: str | None
    after: str | None
    seconds: float
    error: str | None = None


async def migrate_shared(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(upgrade_shared)


async def migrate_one(engine: AsyncEngine, slug: str, schema: str, target: str) -> TenantOutcome:
    started = time.perf_counter()
    before = None
    try:
        async with engine.begin() as conn:
            before = await conn.run_sync(current_revision, schema)
            await conn.run_sync(upgrade_tenant, schema, target)
            after = await conn.run_sync(current_revision, schema)
    except Exception as exc:
        return TenantOutcome(slug, schema, before, before, time.perf_counter() - started, str(exc))
    return TenantOutcome(slug, schema, before, after, time.perf_counter() - started)


async def migrate_all(
    engine: AsyncEngine,
    target: str = "head",
    on_done: Callable[[TenantOutcome], None] | None = None,
) -> list[TenantOutcome]:
    await migrate_shared(engine)
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(TenantRow.slug, TenantRow.schema_name)
            .where(TenantRow.status != TenantStatus.ARCHIVED)
            .order_by(TenantRow.slug)
        )
        tenants = list(rows)
    outcomes = []
    for slug, schema in tenants:
        outcome = await migrate_one(engine, slug, schema, target)
        outcomes.append(outcome)
        if on_done is not None:
            on_done(outcome)
    return outcomes
