"""Migrating the fleet: the shared track first, then every tenant that is not at the target.

- One planning query reads every tenant's recorded revision (kept beside the registry, written
  in the same transaction as each migration); tenants already at the target are skipped
  without being touched, so a no-op run costs a few queries whatever the fleet's size.
- Tenants migrate concurrently over ``concurrency`` connections, each in its own transaction:
  a tenant is either fully at the target or untouched. A failure is recorded and the others
  go on (unless ``fail_fast``); a re-run resumes with whoever is still behind.
- Each tenant migrates under its advisory lock from the revision re-read under it, so two
  runs never apply the same migration twice; lock timeouts are retried, and a concurrent
  index is a step of its own (``tenant_migration.py``).
- Outcomes are streamed to ``on_done`` and only failures are kept, so memory stays flat as
  the fleet grows.
"""

import asyncio
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tenantsvc.tenancy.errors import (
    MigrationError,
    TenancyError,
    TenantNotFoundError,
)
from tenantsvc.tenancy.locking import LOCK_CLASS, LockPolicy, LocksNotGranted
from tenantsvc.tenancy.migrator import ALEMBIC_TURN, resolve, upgrade_shared
from tenantsvc.tenancy.models import TenantRevisionRow, TenantRow, TenantStatus
from tenantsvc.tenancy.steps import concurrent
from tenantsvc.tenancy.tenant_migration import (
    FleetTenant,
    TenantOutcome,
    migrate_tenant,
    steps_between,
)

SHARED_LOCK_ID = 0  # tenant ids start at 1


@dataclass
class Plan:
    target: str | None
    total: int
    behind: list[tuple[FleetTenant, str | None]]  # (tenant, current revision)
    concurrent: bool = False  # some path runs a step outside a transaction (steps.py)
    later: int = 0  # tenants behind the target that ``limit`` leaves for a later run


@dataclass
class Summary:
    target: str | None
    total: int
    migrated: int = 0
    skipped: int = 0
    lock_retries: int = 0  # tenants' migrations run again after a lock timeout or deadlock
    later: int = 0  # behind the target, left for a later run (``limit``)
    failures: list[TenantOutcome] = field(default_factory=list)


def default_concurrency(pool_size: int) -> int:
    """Bounded by the pool budget; beyond a few per core the database only queues."""
    return max(1, min(pool_size, 4 * (os.cpu_count() or 1)))


# Connections the server would still accept from a role that is not a superuser.
_FREE = text(
    "SELECT current_setting('max_connections')::int"
    " - current_setting('superuser_reserved_connections')::int"
    " - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
)


async def free_connections(engine: AsyncEngine) -> int:
    """How many connections a run may use at once: those the server has free, and the one
    this asks on (a run past that fails tenants on "too many clients" instead)."""
    async with engine.connect() as conn:
        return int(await conn.scalar(_FREE) or 0) + 1


async def migrate_shared(
    engine: AsyncEngine,
    policy: LockPolicy = LockPolicy(),  # noqa: B008 (frozen)
    target: str = "head",
) -> None:
    """The shared track, under an advisory lock so concurrent runs apply it once, and waiting
    for its tables' locks the way a tenant's migration does: the registry it alters is what
    every worker's poll and every provisioning reads."""

    async def attempt() -> None:
        async with ALEMBIC_TURN, engine.begin() as conn:
            await conn.execute(select(func.pg_advisory_xact_lock(LOCK_CLASS, SHARED_LOCK_ID)))
            driver: Any = (await conn.get_raw_connection()).driver_connection
            await driver.execute(policy.settings_sql())
            await conn.run_sync(upgrade_shared, target)

    try:
        await policy.retrying(attempt)
    except LocksNotGranted as exc:
        reason = policy.gave_up(exc, where="the shared track")
        raise MigrationError(f"the shared track {reason}") from exc


def checked(target: str, statuses: Sequence[str]) -> tuple[str | None, list[TenantStatus]]:
    """The target revision and the statuses asked for, or the error naming what is wrong:
    checked before a run changes anything, the shared track included."""
    return resolve("tenant", target), [TenantStatus.parse(s) for s in statuses]


async def plan(
    engine: AsyncEngine,
    target: str = "head",
    slugs: Sequence[str] = (),
    statuses: Sequence[str] = (),
    limit: int | None = None,
) -> Plan:
    """The tenants to migrate to ``target``, in slug order. ``limit`` keeps the first few of
    those behind it, for a rollout in stages: a canary batch, then the rest in a later run,
    which finds them still behind."""
    wanted, wanted_statuses = checked(target, statuses)
    query = (
        select(TenantRow.id, TenantRow.slug, TenantRow.schema_name, TenantRevisionRow.revision)
        .outerjoin(TenantRevisionRow, TenantRevisionRow.tenant_id == TenantRow.id)
        .order_by(TenantRow.slug)
    )
    if slugs:
        query = query.where(TenantRow.slug.in_(slugs))
    if wanted_statuses:
        query = query.where(TenantRow.status.in_(wanted_statuses))
    else:
        query = query.where(TenantRow.status != TenantStatus.ARCHIVED)
    async with engine.connect() as conn:
        rows = list(await conn.execute(query))
        found = {slug for _, slug, _, _ in rows}
        if missing := [slug for slug in dict.fromkeys(slugs) if slug not in found]:
            raise await _left_out(conn, missing)  # a typo must not pass for "nothing to do"
    behind = [(FleetTenant(i, slug, schema), rev) for i, slug, schema, rev in rows if rev != wanted]
    now = behind[:limit] if limit is not None else behind
    # Rendered once per starting revision: what steps.py refuses fails here, not per tenant.
    paths = [await steps_between(before, wanted) for before in {rev for _, rev in now}]
    is_concurrent = any(concurrent(steps) for steps in paths)
    return Plan(wanted, len(rows), now, is_concurrent, later=len(behind) - len(now))


async def _left_out(conn: AsyncConnection, slugs: list[str]) -> TenancyError:
    """Why tenants asked for by name are not in the plan: unknown, or left out by status."""
    query = select(TenantRow.slug, TenantRow.status).where(TenantRow.slug.in_(slugs))
    statuses: dict[str, str] = dict((await conn.execute(query)).all())
    if unknown := [slug for slug in slugs if slug not in statuses]:
        return TenantNotFoundError(*unknown)
    slug, status = next(iter(statuses.items()))
    hint = f": `tenantctl restore {slug}` first" if status == TenantStatus.ARCHIVED else ""
    return TenancyError(f"tenant {slug!r} is {status}, which this run leaves out{hint}")


async def run_plan(
    engine: AsyncEngine,
    the_plan: Plan,
    concurrency: int,
    *,
    fail_fast: bool = False,
    on_done: Callable[[TenantOutcome], None] | None = None,
    policy: LockPolicy = LockPolicy(),  # noqa: B008 (frozen)
) -> Summary:
    waiting = len(the_plan.behind) + the_plan.later
    summary = Summary(
        the_plan.target, the_plan.total, skipped=the_plan.total - waiting, later=the_plan.later
    )
    pending = iter(the_plan.behind)

    async def worker() -> None:
        for tenant, before in pending:
            if fail_fast and summary.failures:
                return
            outcome = await migrate_tenant(engine, tenant, before, the_plan.target, policy)
            summary.lock_retries += outcome.attempts - 1
            if outcome.error:
                summary.failures.append(outcome)
            elif outcome.skipped:
                summary.skipped += 1
            else:
                summary.migrated += 1
            if on_done is not None:
                on_done(outcome)

    await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    return summary


async def migrate_all(
    engine: AsyncEngine,
    target: str = "head",
    *,
    concurrency: int = 4,
    slugs: Sequence[str] = (),
    statuses: Sequence[str] = (),
    fail_fast: bool = False,
    on_done: Callable[[TenantOutcome], None] | None = None,
    policy: LockPolicy = LockPolicy(),  # noqa: B008 (frozen)
) -> Summary:
    await migrate_shared(engine, policy)
    the_plan = await plan(engine, target, slugs, statuses)
    return await run_plan(
        engine, the_plan, concurrency, fail_fast=fail_fast, on_done=on_done, policy=policy
    )
