"""FastAPI dependencies: the tenant, its transaction and the unit of work over it.

Session dependencies use ``scope="function"`` so the commit happens after the handler returns
and before the response is sent: a client never sees 201 for a write that then failed to
commit. Writes go to the primary (``get_write_db``); read-only endpoints use ``get_read_db``,
which may route to a replica (see ``db/replicas.py``) with the same per-transaction tenant
handling.
"""

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Annotated, Any, TypeVar

import asyncpg
from fastapi import Depends, Request
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from tenantsvc.db.errors import NOT_YET_REPLAYED, sqlstate
from tenantsvc.db.fairness import TenantBusyError, TenantSlots
from tenantsvc.db.replicas import (
    BadTokenError,
    Replica,
    format_lsn,
    parse_lsn,
    primary_position,
)
from tenantsvc.db.session import Database, tenant_connection, tenant_session
from tenantsvc.problems import READ_ONLY_RETRY, Problem
from tenantsvc.tenancy.errors import first_line
from tenantsvc.tenancy.models import TenantStatus
from tenantsvc.tenancy.registry import Tenant
from tenantsvc.uow import UnitOfWork

log = logging.getLogger(__name__)
T = TypeVar("T")

CONSISTENCY_HEADER = "X-Consistency-Token"


# Dependencies are ``async def`` even when they do not await: FastAPI runs a plain ``def``
# dependency in a worker thread, a thread hop per request on the hot path.
async def get_tenant(request: Request) -> Tenant:
    tenant: Tenant = request.state.tenant
    return tenant


CurrentTenant = Annotated[Tenant, Depends(get_tenant)]


async def _hand_out_token(request: Request, database: Database) -> None:
    """After a commit, when replicas exist: the client's read-your-writes token."""
    if database.has_replicas:
        request.state.consistency_token = format_lsn(await primary_position(database.engine))


async def _take_slot(request: Request) -> TenantSlots:
    """One of the tenant's places in this worker (``db/fairness.py``), before any connection is
    checked out: beyond its cap, a tenant's requests queue by themselves."""
    slots: TenantSlots = request.state.db.slots
    schema = request.state.tenant.schema
    if slots.try_acquire(schema):
        return slots
    try:
        await slots.acquire(schema)
    except TenantBusyError as busy:
        detail = f"{busy.limit} requests of this tenant are in progress here; retry shortly"
        raise Problem(429, "Too many requests", detail, {"Retry-After": "1"}) from None
    return slots


def _writable(tenant: Tenant) -> None:
    """A read-only tenant (maintenance, a move) is refused before any connection is taken."""
    if tenant.status == TenantStatus.READ_ONLY:
        detail = f"tenant {tenant.slug!r} is read-only for maintenance: reads are served"
        raise Problem(503, "Tenant is read-only", detail, {"Retry-After": READ_ONLY_RETRY})


@asynccontextmanager
async def _on_primary(request: Request, opened: AbstractAsyncContextManager[T]) -> AsyncIterator[T]:
    """A write transaction on the primary; once committed, the read-your-writes token."""
    request.state.served_by = "primary"
    _writable(request.state.tenant)
    slots = await _take_slot(request)
    try:
        async with opened as handle:
            yield handle
    finally:
        slots.release(request.state.tenant.schema)
    await _hand_out_token(request, request.state.db)


async def get_write_db(request: Request, tenant: CurrentTenant) -> AsyncIterator[AsyncSession]:
    database: Database = request.state.db
    opened = tenant_session(database.sessionmaker, tenant.schema, tenant.role)
    async with _on_primary(request, opened) as session:
        yield session


def write_connection(request: Request, tenant: Tenant) -> AbstractAsyncContextManager[Any]:
    """The hot-path twin of ``get_write_db``: a raw connection in the tenant's transaction.
    Plain routes (``plain_routes.py``) enter it themselves."""
    database: Database = request.state.db
    opened = tenant_connection(database.engine, tenant.schema, database.statements, tenant.role)
    return _on_primary(request, opened)


async def get_write_conn(request: Request, tenant: CurrentTenant) -> AsyncIterator[Any]:
    async with write_connection(request, tenant) as conn:
        yield conn


def _token(request: Request) -> int | None:
    offered = request.headers.get(CONSISTENCY_HEADER)
    if offered is None:
        return None
    try:
        return parse_lsn(offered.strip(" \t"))  # RFC 9110: the whitespace around is not in it
    except BadTokenError as exc:
        raise Problem(400, "Bad consistency token", str(exc)) from None


READ_FROM_PRIMARY = "read_from_primary"  # request.state: a replica has not replayed the tenant


async def _replica_for(request: Request, database: Database) -> Replica | None:
    """The replica to read from; None for the primary (none caught up, or one found behind
    this tenant's DDL on an earlier attempt: ``tenant_routes.py``)."""
    if request.scope["state"].get(READ_FROM_PRIMARY):
        return None
    return await database.router.choose(_token(request))


def _replica_failed(replica: Replica, exc: BaseException) -> None:
    """A replica that cannot open the tenant's transaction is skipped until the monitor finds it
    well, unless it merely has not replayed the tenant's role yet: it serves the others."""
    if sqlstate(exc) in NOT_YET_REPLAYED:
        log.info("replica %s has not replayed the tenant yet: %s", replica.name, first_line(exc))
        return
    log.warning("replica %s failed, reading from the primary: %s", replica.name, exc)
    replica.healthy = False


@asynccontextmanager
async def _read_context(
    request: Request, opener: Callable[[Replica | None], AbstractAsyncContextManager[T]]
) -> AsyncIterator[T]:
    """Open ``opener(replica)`` on the replica the router picks, or ``opener(None)`` on the
    primary; a replica that fails while the transaction opens sends the read to the primary."""
    database: Database = request.state.db
    replica = await _replica_for(request, database) if database.has_replicas else None
    async with AsyncExitStack() as stack:
        slots = await _take_slot(request)
        stack.callback(slots.release, request.state.tenant.schema)
        opened: T | None = None
        if replica is not None:
            try:
                opened = await stack.enter_async_context(opener(replica))
            except (OSError, DBAPIError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                _replica_failed(replica, exc)
        request.state.served_by = replica.name if replica and opened is not None else "primary"
        if opened is None:
            opened = await stack.enter_async_context(opener(None))
        yield opened


async def get_read_db(request: Request, tenant: CurrentTenant) -> AsyncIterator[AsyncSession]:
    database: Database = request.state.db

    def opener(replica: Replica | None) -> AbstractAsyncContextManager[AsyncSession]:
        maker = replica.sessionmaker if replica else database.sessionmaker
        return tenant_session(maker, tenant.schema, tenant.role)

    async with _read_context(request, opener) as session:
        yield session


def read_connection(request: Request, tenant: Tenant) -> AbstractAsyncContextManager[Any]:
    """The hot-path twin of ``get_read_db``."""
    database: Database = request.state.db

    def opener(replica: Replica | None) -> AbstractAsyncContextManager[Any]:
        engine = replica.engine if replica else database.engine
        return tenant_connection(engine, tenant.schema, database.statements, tenant.role)

    return _read_context(request, opener)


async def get_read_conn(request: Request, tenant: CurrentTenant) -> AsyncIterator[Any]:
    async with read_connection(request, tenant) as conn:
        yield conn


DbSession = Annotated[AsyncSession, Depends(get_write_db, scope="function")]
ReadDbSession = Annotated[AsyncSession, Depends(get_read_db, scope="function")]
# Raw asyncpg connections in the tenant's transaction, for the hottest endpoints.
WriteConn = Annotated[Any, Depends(get_write_conn, scope="function")]
ReadConn = Annotated[Any, Depends(get_read_conn, scope="function")]


async def get_uow(session: DbSession) -> UnitOfWork:
    return UnitOfWork(session)


async def get_read_uow(session: ReadDbSession) -> UnitOfWork:
    return UnitOfWork(session)


Uow = Annotated[UnitOfWork, Depends(get_uow)]
ReadUow = Annotated[UnitOfWork, Depends(get_read_uow)]
