"""Migrating one tenant, under its advisory lock, from the revision it is really at.

- Ordinary revisions: one transaction and one round trip (the compiled script, the revision
  record beside the registry); the tenant is either at the target or untouched.
- A path through a concurrent index (``steps.py``): a step at a time on one connection that
  holds the tenant's lock for the session, reset afterwards (closed if it failed).
- A lock timeout or deadlock rolls the attempt back and tries again (``locking.py``); a tenant
  given up, or stopped after a committed step, says where it is.
"""

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantsvc.tenancy.ddl import (
    record_revision_sql,
    revision_sql,
    search_path_sql,
    session_search_path_sql,
)
from tenantsvc.tenancy.errors import MigrationError, first_line
from tenantsvc.tenancy.locking import LOCK_CLASS, LockPolicy, LocksNotGranted
from tenantsvc.tenancy.migrator import ALEMBIC_TURN, migrate_tenant_online, tenant_steps
from tenantsvc.tenancy.models import TenantStatus
from tenantsvc.tenancy.steps import Step, concurrent, run_index

# Back to the connection's own settings (its startup ones: statement_timeout...); no lock held.
_SESSION_RESET = "RESET ALL; SELECT pg_advisory_unlock_all()"
_STATUS = "SELECT status FROM tenantsvc.tenants WHERE id = $1"


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


async def steps_between(before: str | None, target: str | None) -> tuple[Step, ...] | None:
    """None for a path Alembic cannot render offline: its online path runs it."""
    try:
        return await tenant_steps(before, target)
    except MigrationError:
        raise
    except Exception:
        return None


async def _apply(
    engine: AsyncEngine, tenant: FleetTenant, target: str | None, policy: LockPolicy
) -> TenantOutcome:
    started = time.perf_counter()
    async with engine.begin() as conn:
        # Taken before the lock timeout is set: a second run waits here for the first.
        await conn.execute(select(func.pg_advisory_xact_lock(LOCK_CLASS, tenant.id)))
        driver: Any = (await conn.get_raw_connection()).driver_connection
        await driver.execute(policy.settings_sql())
        if await _archived(driver, tenant):
            return _passed_by(tenant, started)
        # The truth, read under the lock: another run may have migrated this tenant already.
        before = await driver.fetchval(revision_sql(tenant.schema))
        if before == target:
            await driver.execute(record_revision_sql(tenant.id, before))
            elapsed = time.perf_counter() - started
            return TenantOutcome(tenant.slug, tenant.schema, before, before, elapsed, skipped=True)
        steps = await steps_between(before, target)
        if steps is None:
            async with ALEMBIC_TURN:
                await conn.run_sync(migrate_tenant_online, tenant.schema, target)
        elif concurrent(steps):
            raise MigrationError(f"moved to {before} since the run began: re-run to resume")
        else:
            for step in steps:  # one: ordinary revisions in a row share a transaction
                await driver.execute(_step_sql(tenant, step))
    return TenantOutcome(tenant.slug, tenant.schema, before, target, time.perf_counter() - started)


async def _archived(driver: Any, tenant: FleetTenant) -> bool:
    """Archived (or purged) since the run listed it: its schema is no longer where the run
    looks. Read under the tenant's lock, which archiving takes too (``lifecycle.py``)."""
    status = await driver.fetchval(_STATUS, tenant.id)
    return status in (None, TenantStatus.ARCHIVED.value)


def _passed_by(tenant: FleetTenant, started: float) -> TenantOutcome:
    """Passed by, as the run passes archived tenants by."""
    elapsed = time.perf_counter() - started
    return TenantOutcome(tenant.slug, tenant.schema, None, None, elapsed, skipped=True)


def _step_sql(tenant: FleetTenant, step: Step) -> str:
    return search_path_sql(tenant.schema) + step.sql + record_revision_sql(tenant.id, step.target)


async def _apply_in_steps(
    engine: AsyncEngine, tenant: FleetTenant, target: str | None, policy: LockPolicy
) -> TenantOutcome:
    """A path through a concurrent index: each step commits on its own (``steps.py``), on one
    connection that holds the tenant's lock for the session. Neither the lock nor the session
    settings may outlive the migration: they are reset before the connection goes back to the
    pool, and a connection whose migration failed is closed instead (its state unknown)."""
    started = time.perf_counter()
    async with engine.connect() as conn:
        driver: Any = (await conn.get_raw_connection()).driver_connection
        clean = False
        try:
            await driver.execute(f"SELECT pg_advisory_lock({LOCK_CLASS}, {int(tenant.id)})")
            archived = await _archived(driver, tenant)
            before = None if archived else await _steps(driver, tenant, target, policy)
            await driver.execute(_SESSION_RESET)
            clean = True
        finally:
            if not clean:
                await conn.invalidate()
    if archived:
        return _passed_by(tenant, started)
    elapsed = time.perf_counter() - started
    return TenantOutcome(tenant.slug, tenant.schema, before, target, elapsed,
                         skipped=before == target)  # fmt: skip


async def _steps(
    driver: Any, tenant: FleetTenant, target: str | None, policy: LockPolicy
) -> str | None:
    """Each step in its own transaction; returns the revision the tenant was at. A failure
    past the first step is ``PartlyMigrated``: the steps before it stay committed."""
    before: str | None = await driver.fetchval(revision_sql(tenant.schema))
    reached = before
    try:
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
    return before


class PartlyMigrated(MigrationError):
    """The steps up to ``reached`` committed, then one failed: a re-run resumes from there."""

    def __init__(self, reached: str | None, cause: Exception) -> None:
        super().__init__(f"stopped at {reached} (the steps before committed): {first_line(cause)}")
        self.reached = reached


def _index_settings(schema: str, policy: LockPolicy) -> str:
    """For the session (reset after): a concurrent build waits for the transactions that use
    its table without blocking any of them, so it waits as long as it takes."""
    return (
        session_search_path_sql(schema)
        + f"SET lock_timeout = 0; SET statement_timeout = {int(policy.statement_timeout_ms)};"
    )


async def migrate_tenant(
    engine: AsyncEngine,
    tenant: FleetTenant,
    before: str | None,
    target: str | None,
    policy: LockPolicy = LockPolicy(),  # noqa: B008 (frozen)
) -> TenantOutcome:
    started = time.perf_counter()
    attempts, reached = 0, before  # reached: what committed steps left, over all attempts
    apply = _apply_in_steps if concurrent(await steps_between(before, target)) else _apply

    async def attempt() -> TenantOutcome:
        nonlocal attempts, reached
        attempts += 1
        try:
            return await apply(engine, tenant, target, policy)
        except PartlyMigrated as exc:
            reached = exc.reached
            raise

    try:
        outcome = await policy.retrying(attempt)
    except LocksNotGranted as exc:
        where = "this tenant" if reached == before else f"this tenant past {reached}"
        error = policy.gave_up(exc, where)
    except Exception as exc:
        error = first_line(exc)
    else:
        outcome.seconds, outcome.attempts = time.perf_counter() - started, attempts
        return outcome
    elapsed = time.perf_counter() - started
    return TenantOutcome(tenant.slug, tenant.schema, before, reached, elapsed, error,
                         attempts=attempts)  # fmt: skip
