"""FastAPI dependencies: the tenant, its transaction and the unit of work over it.

Session dependencies use ``scope="function"`` so the commit happens after the handler returns
and before the response is sent: a client never sees 201 for a write that then failed to
commit. Writes go to the primary (``get_write_db``); read-only endpoints use ``get_read_db``,
which may route to a replica (see ``db/replicas.py``) with the same per-transaction tenant
handling.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from tenantsvc.db.replicas import (
    BadTokenError,
    Replica,
    format_lsn,
    parse_lsn,
    primary_position,
)
from tenantsvc.db.session import Database, tenant_session
from tenantsvc.problems import Problem
from tenantsvc.tenancy.registry import Tenant
from tenantsvc.uow import UnitOfWork

log = logging.getLogger(__name__)

CONSISTENCY_HEADER = "X-Consistency-Token"


def get_tenant(request: Request) -> Tenant:
    tenant: Tenant = request.state.tenant
    return tenant


CurrentTenant = Annotated[Tenant, Depends(get_tenant)]


async def get_write_db(request: Request, tenant: CurrentTenant) -> AsyncIterator[AsyncSession]:
    database: Database = request.state.db
    request.state.served_by = "primary"
    async with tenant_session(database.sessionmaker, tenant.schema) as session:
        yield session
    if database.has_replicas:  # committed: hand the client its read-your-writes token
        request.state.consistency_token = format_lsn(await primary_position(database.engine))


def _token(request: Request) -> int | None:
    offered = request.headers.get(CONSISTENCY_HEADER)
    if offered is None:
        return None
    try:
        return parse_lsn(offered)
    except BadTokenError as exc:
        raise Problem(400, "Bad consistency token", str(exc)) from None


async def _replica_session(
    stack: AsyncExitStack, replica: Replica, schema: str
) -> AsyncSession | None:
    """The replica's tenant transaction, or None when the replica turned out to be down
    (the read then goes to the primary instead of failing)."""
    try:
        return await stack.enter_async_context(tenant_session(replica.sessionmaker, schema))
    except (OSError, DBAPIError) as exc:
        log.warning("replica %s failed, reading from the primary: %s", replica.name, exc)
        replica.healthy = False
        return None


async def get_read_db(request: Request, tenant: CurrentTenant) -> AsyncIterator[AsyncSession]:
    database: Database = request.state.db
    at_least = _token(request)
    replica = await database.router.choose(at_least) if database.has_replicas else None
    async with AsyncExitStack() as stack:
        session = await _replica_session(stack, replica, tenant.schema) if replica else None
        request.state.served_by = replica.name if replica and session else "primary"
        if session is None:
            session = await stack.enter_async_context(
                tenant_session(database.sessionmaker, tenant.schema)
            )
        yield session


DbSession = Annotated[AsyncSession, Depends(get_write_db, scope="function")]
ReadDbSession = Annotated[AsyncSession, Depends(get_read_db, scope="function")]


def get_uow(session: DbSession) -> UnitOfWork:
    return UnitOfWork(session)


def get_read_uow(session: ReadDbSession) -> UnitOfWork:
    return UnitOfWork(session)


Uow = Annotated[UnitOfWork, Depends(get_uow)]
ReadUow = Annotated[UnitOfWork, Depends(get_read_uow)]
