"""Migrating the fleet: the shared track first, then every tenant that is not at the target.

- One planning query reads every tenant's recorded revision (kept beside the registry, written
  in the same transaction as each migration); tenants already at the target are skipped
  without being touched, so a no-op run costs a few queries whatever the fleet's size.
- Tenants migrate concurrently over ``concurrency`` connections, each in its own transaction:
  a tenant is either fully at the target or untouched. A failure is recorded and the others
  go on (unless ``fail_fast``); a re-run resumes with whoever is still behind.
- A per-tenant advisory lock, then a re-read of the revision under it, means two runs never
  apply the same migration twice: the second waits, sees the tenant at the target, skips.
- A migration waits for a table's lock a bounded time, then rolls back and retries, so a long
  transaction in a tenant delays its migration instead of stalling its requests
  (``locking.py``).
- A revision that builds an index concurrently is a step of its own, outside the transaction,
  resumable (``steps.py``).
- Outcomes are streamed to ``on_done`` and only failures are kept, so memory stays flat as
  the fleet grows.
"""

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tenantsvc.tenancy.ddl import identifier, record_revision_sql, search_path_sql
from tenantsvc.tenancy.errors import (
    MigrationError,
    TenancyError,
    TenantNotFoundError,
    first_line,
)
from tenantsvc.tenancy.locking import LockPolicy, is_lock_conflict
from tenantsvc.tenancy.migrator import (
    ALEMBIC_TURN,
    migrate_tenant_online,
    resolve,
    tenant_steps,
    upgrade_shared,
)
from tenantsvc.tenancy.models import TenantRevisionRow, TenantRow, TenantStatus
from tenantsvc.tenancy.steps import Step, concurrent, run_index

_REVISION = "SELECT max(version_num) FROM {}.alembic_version"
LOCK_CLASS = 0x74656E  # advisory lock namespace for tenant migrations ("ten")
SHARED_LOCK_ID = 0  # tenant ids start at 1


@dataclass(frozen=True, slots=True)
class FleetTenant:
    id: int
    slug: str
    schema: str


@dataclass(slots=True)
class TenantOutcome:
    slug: str
    schema: str
    before: str | None
    after: str | None
    seconds: float
    error: str | None = None
    skipped: bool = False
    attempts: int = 1


@dataclass
class Plan:
    target: str | None
    total: int
    behind: list[tuple[FleetTenant, str | None]]  # (tenant, current revision)


@dataclass
class Summary:
    target: str | None
    total: int
    migrated: int = 0
    skipped: int = 0
    lock_retries: int = 0  # tenants' migrations run again after a lock timeout or deadlock
    failures: list[TenantOutcome] = field(default_factory=list)


def default_concurrency(pool_size: int) -> int:
    """Bounded by the pool budget; beyond a few per core the database only queues."""
    return max(1, min(pool_size, 4 * (os.cpu_count() or 1)))


async def migrate_shared(
    engine: AsyncEngine,
    policy: LockPolicy = LockPolicy(),  # noqa: B008 (frozen)
    target: str = "head",
) -> None:
    """The shared track, under an advisory lock so concurrent runs apply it once, and waiting
    for its tables' locks the way a tenant's migration does: the registry it alters is what
    every worker's poll and every provisioning reads."""
    attempts = 0

    async def attempt() -> None:
        nonlocal attempts
        attempts += 1
        async with ALEMBIC_TURN, engine.begin() as conn:
            await conn.execute(select(func.pg_advisory_xact_lock(LOCK_CLASS, SHARED_LOCK_ID)))
            driver: Any = (await conn.get_raw_connection()).driver_connection
            await driver.execute(policy.settings_sql())
            await conn.run_sync(upgrade_shared, target)

    try:
        await policy.retrying(attempt)
    except Exception as exc:
        if not is_lock_conflict(exc):
            raise
        reason = policy.gave_up(attempts, first_line(exc), where="the shared track")
        raise MigrationError(f"the shared track {reason}") from exc


async def plan(
    engine: AsyncEngine,
    target: str = "head",
    slugs: Sequence[str] = (),
    statuses: Sequence[str] = (),
) -> Plan:
    wanted = resolve("tenant", target)
    query = (
        select(TenantRow.id, TenantRow.slug, TenantRow.schema_name, TenantRevisionRow.revision)
        .outerjoin(TenantRevisionRow, TenantRevisionRow.tenant_id == TenantRow.id)
        .order_by(TenantRow.slug)
    )
    if slugs:
        query = query.where(TenantRow.slug.in_(slugs))
    if statuses:
        query = query.where(TenantRow.status.in_([TenantStatus.parse(s) for s in statuses]))
    else:
        query = query.where(TenantRow.status != TenantStatus.ARCHIVED)
    async with engine.connect() as conn:
        rows = list(await conn.execute(query))
        found = {slug for _, slug, _, _ in rows}
        if missing := [slug for slug in dict.fromkeys(slugs) if slug not in found]:
            raise await _left_out(conn, missing)  # a typo must not pass for "nothing to do"
    behind = [(FleetTenant(i, slug, schema), rev) for i, slug, schema, rev in rows if rev != wanted]
    for before in {rev for _, rev in behind}:
        await _steps(before, wanted)  # a revision steps.py refuses fails here, not per tenant
    return Plan(wanted, len(rows), behind)


async def _steps(before: str | None, target: str | None) -> tuple[Step, ...] | None:
    """None for a path Alembic cannot render offline: its online path runs it."""
    try:
        return await tenant_steps(before, target)
    except MigrationError:
        raise
    except Exception:
        return None


async def _left_out(conn: AsyncConnection, slugs: list[str]) -> TenancyError:
    """Why tenants asked for by name are not in the plan: unknown, or left out by status."""
    query = select(TenantRow.slug, TenantRow.status).where(TenantRow.slug.in_(slugs))
    statuses: dict[str, str] = dict((await conn.execute(query)).all())
    if unknown := [slug for slug in slugs if slug not in statuses]:
        return TenantNotFoundError(*unknown)
    slug, status = next(iter(statuses.items()))
    hint = f": `tenantctl restore {slug}` first" if status == TenantStatus.ARCHIVED else ""
    return TenancyError(f"tenant {slug!r} is {status}, which this run leaves out{hint}")


async def _apply(
    engine: AsyncEngine, tenant: FleetTenant, target: str | None, policy: LockPolicy
) -> TenantOutcome:
    started = time.perf_counter()
    async with engine.begin() as conn:
        # Taken before the lock timeout is set: a second run waits here for the first.
        await conn.execute(select(func.pg_advisory_xact_lock(LOCK_CLASS, tenant.id)))
        driver: Any = (await conn.get_raw_connection()).driver_connection
        await driver.execute(policy.settings_sql())
        # The truth, read under the lock: another run may have migrated this tenant already.
        before = await driver.fetchval(_REVISION.format(identifier(tenant.schema)))
        if before == target:
            await driver.execute(record_revision_sql(tenant.id, before))
            elapsed = time.perf_counter() - started
            return TenantOutcome(tenant.slug, tenant.schema, before, before, elapsed, skipped=True)
        steps = await _steps(before, target)
        if steps is None:
            async with ALEMBIC_TURN:
                await conn.run_sync(migrate_tenant_online, tenant.schema, target)
        elif concurrent(steps):
            raise MigrationError(f"moved to {before} since the run began: re-run to resume")
        else:
            for step in steps:  # one: ordinary revisions in a row share a transaction
                await driver.execute(_step_sql(tenant, step))
    return TenantOutcome(tenant.slug, tenant.schema, before, target, time.perf_counter() - started)


def _step_sql(tenant: FleetTenant, step: Step) -> str:
    return search_path_sql(tenant.schema) + step.sql + record_revision_sql(tenant.id, step.target)


async def _apply_in_steps(
    engine: AsyncEngine, tenant: FleetTenant, target: str | None, policy: LockPolicy
) -> TenantOutcome:
    """A path through a concurrent index: each step commits on its own (``steps.py``), on one
    connection that holds the tenant's lock for the session and is closed afterwards, so
    neither the lock nor its session settings can outlive the migration."""
    started = time.perf_counter()
    before = reached = None
    async with engine.connect() as conn:
        driver: Any = (await conn.get_raw_connection()).driver_connection
        try:
            await driver.execute(f"SELECT pg_advisory_lock({LOCK_CLASS}, {int(tenant.id)})")
            before = reached = await driver.fetchval(_REVISION.format(identifier(tenant.schema)))
            steps = await tenant_steps(before, target) if before != target else ()
            for step in steps or (Step("", before),):  # at the target: its record only
                if step.indexes:
                    await driver.execute(_index_settings(tenant.schema, policy))
                    for index in step.indexes:
                        await run_index(driver, tenant.schema, index)
                async with driver.transaction():
                    await driver.execute(policy.settings_sql() + _step_sql(tenant, step))
                reached = step.target
        except Exception as exc:
            if reached == before:
                raise
            raise PartlyMigrated(reached, exc) from exc
        finally:
            await conn.invalidate()
    elapsed = time.perf_counter() - started
    return TenantOutcome(tenant.slug, tenant.schema, before, target, elapsed,
                         skipped=before == target)  # fmt: skip


class PartlyMigrated(MigrationError):
    """The steps up to ``reached`` committed, then one failed: a re-run resumes from there."""

    def __init__(self, reached: str | None, cause: Exception) -> None:
        super().__init__(f"stopped at {reached} (the steps before committed): {first_line(cause)}")
        self.reached = reached


def _index_settings(schema: str, policy: LockPolicy) -> str:
    """For the session (closed after): a concurrent build waits for the transactions that use
    its table without blocking any of them, so it waits as long as it takes."""
    return (
        f"SET search_path TO {identifier(schema)}; SET lock_timeout = 0; "
        f"SET statement_timeout = {int(policy.statement_timeout_ms)}"
    )


async def migrate_tenant(
    engine: AsyncEngine,
    tenant: FleetTenant,
    before: str | None,
    target: str | None,
    policy: LockPolicy = LockPolicy(),  # noqa: B008 (frozen)
) -> TenantOutcome:
    started = time.perf_counter()
    attempts = 0

    apply = _apply_in_steps if concurrent(await _steps(before, target)) else _apply

    async def attempt() -> TenantOutcome:
        nonlocal attempts
        attempts += 1
        return await apply(engine, tenant, target, policy)

    try:
        outcome = await policy.retrying(attempt)
    except Exception as exc:
        conflict = is_lock_conflict(exc)
        error = policy.gave_up(attempts, first_line(exc)) if conflict else first_line(exc)
        after = exc.reached if isinstance(exc, PartlyMigrated) else before
        elapsed = time.perf_counter() - started
        return TenantOutcome(tenant.slug, tenant.schema, before, after, elapsed, error,
                             attempts=attempts)  # fmt: skip
    outcome.seconds, outcome.attempts = time.perf_counter() - started, attempts
    return outcome


async def run_plan(
    engine: AsyncEngine,
    the_plan: Plan,
    concurrency: int,
    *,
    fail_fast: bool = False,
    on_done: Callable[[TenantOutcome], None] | None = None,
    policy: LockPolicy = LockPolicy(),  # noqa: B008 (frozen)
) -> Summary:
    summary = Summary(
        the_plan.target, the_plan.total, skipped=the_plan.total - len(the_plan.behind)
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
