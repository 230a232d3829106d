"""FastAPI dependencies: the tenant, its transaction and the unit of work over it.

The session dependency uses ``scope="function"`` so the commit happens after the handler
returns and before the response is sent: a client never sees 201 for a write that then failed
to commit.
"""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from tenantsvc.db.session import Database, tenant_session
from tenantsvc.tenancy.registry import Tenant
from tenantsvc.uow import UnitOfWork


def get_tenant(request: Request) -> Tenant:
    tenant: Tenant = request.state.tenant
    return tenant


CurrentTenant = Annotated[Tenant, Depends(get_tenant)]


async def get_db(request: Request, tenant: CurrentTenant) -> AsyncIterator[AsyncSession]:
    database: Database = request.state.db
    async with tenant_session(database.sessionmaker, tenant.schema) as session:
        yield session


DbSession = Annotated[AsyncSession, Depends(get_db, scope="function")]


def get_uow(session: DbSession) -> UnitOfWork:
    return UnitOfWork(session)


Uow = Annotated[UnitOfWork, Depends(get_uow)]
