"""Tenant context for work outside a request: FastAPI background tasks, workers, scripts.

A job gets its own transaction in the tenant's schema (the request's transaction has ended
by the time a background task runs), and the tenant travels in a contextvar, so concurrent
jobs of different tenants in one event loop stay apart and their log lines say whose they are.
"""

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TypeVar

from fastapi import BackgroundTasks
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tenantsvc.db.session import tenant_session
from tenantsvc.observability.context import tenant_slug
from tenantsvc.tenancy.admin import get_tenant
from tenantsvc.tenancy.errors import TenancyError
from tenantsvc.tenancy.models import SERVED, TenantStatus
from tenantsvc.tenancy.registry import Tenant

T = TypeVar("T")
Job = Callable[[AsyncSession], Awaitable[T]]

# Allowed at any point of a transaction (only going back to read-write is not).
READ_ONLY_TRANSACTION = text("SET LOCAL transaction_read_only = on")
current_tenant: ContextVar[Tenant | None] = ContextVar("current_tenant", default=None)


async def run_in_tenant(
    sessionmaker: async_sessionmaker[AsyncSession], tenant: Tenant, job: Job[T]
) -> T:
    """Run ``job(session)`` in one transaction of ``tenant``'s schema, committed if it
    returns, rolled back if it raises."""
    tenant_token, slug_token = current_tenant.set(tenant), tenant_slug.set(tenant.slug)
    try:
        async with tenant_session(sessionmaker, tenant.schema, tenant.role) as session:
            if tenant.status == TenantStatus.READ_ONLY:  # its writes fail in the database
                await session.execute(READ_ONLY_TRANSACTION)
            return await job(session)
    finally:
        current_tenant.reset(tenant_token)
        tenant_slug.reset(slug_token)


async def run_for_slug(engine: AsyncEngine, slug: str, job: Job[T]) -> T:
    """For scripts and workers: look the tenant up in the registry, then ``run_in_tenant``."""
    async with engine.connect() as conn:
        info = await get_tenant(conn, slug)
    if info.status not in SERVED:
        raise TenancyError(f"tenant {slug!r} is {info.status}")
    tenant = Tenant(info.id, info.slug, info.schema, info.status, info.role)
    return await run_in_tenant(async_sessionmaker(engine, expire_on_commit=False), tenant, job)


def schedule(
    tasks: BackgroundTasks,
    sessionmaker: async_sessionmaker[AsyncSession],
    tenant: Tenant,
    job: Job[object],
) -> None:
    """Queue ``job`` to run after the response, in the request tenant's own transaction."""
    tasks.add_task(run_in_tenant, sessionmaker, tenant, job)
