"""Test-only endpoints that fail on purpose inside a tenant transaction, and a check of which
schema a request really runs in. Mounted only by the isolation tests."""

import asyncio
from typing import Any

from fastapi import APIRouter, FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tenantsvc.deps import CurrentTenant, DbSession, ReadConn, ReadDbSession, WriteConn

router = APIRouter(prefix="/_fault")
_WHO = "SELECT current_setting('search_path') AS search_path, current_user AS role"
_NAMES = "SELECT name FROM products ORDER BY id LIMIT 3"


def _who(tenant: CurrentTenant, who: Any, names: Any) -> dict[str, object]:
    return {"tenant": tenant.slug, "search_path": who[0], "role": who[1], "names": list(names)}


async def _who_session(session: AsyncSession, tenant: CurrentTenant) -> dict[str, object]:
    who = (await session.execute(text(_WHO))).one()
    return _who(tenant, who, (await session.execute(text(_NAMES))).scalars())


async def _who_conn(conn: Any, tenant: CurrentTenant) -> dict[str, object]:
    who = await conn.driver.fetchrow(_WHO)
    return _who(tenant, who, [r["name"] for r in await conn.fetch(_NAMES)])


@router.get("/whoami")
async def whoami(session: DbSession, tenant: CurrentTenant) -> dict[str, object]:
    """The schema the transaction resolves to, the role it runs as, and a marker row read
    through them: on the ORM's write session, and below on each of the other ways a request
    gets its transaction."""
    return await _who_session(session, tenant)


@router.get("/whoami/read-session")
async def whoami_read_session(session: ReadDbSession, tenant: CurrentTenant) -> dict[str, object]:
    return await _who_session(session, tenant)


@router.get("/whoami/read")
async def whoami_read(conn: ReadConn, tenant: CurrentTenant) -> dict[str, object]:
    return await _who_conn(conn, tenant)


@router.get("/whoami/write")
async def whoami_write(conn: WriteConn, tenant: CurrentTenant) -> dict[str, object]:
    return await _who_conn(conn, tenant)


@router.get("/raise")
async def raise_after_query(session: DbSession) -> None:
    await session.execute(text("SELECT count(*) FROM products"))
    raise RuntimeError("injected failure after the first query")


@router.get("/timeout")
async def statement_timeout(session: DbSession) -> None:
    await session.execute(text("SET LOCAL statement_timeout = 20"))
    await session.execute(text("SELECT pg_sleep(1)"))


@router.get("/slow")
async def slow(session: DbSession, tenant: CurrentTenant) -> dict[str, object]:
    """Holds the transaction open across an await: the client gives up (cancels) mid-way."""
    await session.execute(text("SELECT pg_sleep(0.02)"))
    await asyncio.sleep(0.01)
    names = (await session.execute(text("SELECT name FROM products ORDER BY id LIMIT 3"))).scalars()
    return {"tenant": tenant.slug, "names": list(names)}


@router.get("/sleep")
async def sleep(session: DbSession, seconds: float = 1.0) -> dict[str, str]:
    await session.execute(text("SELECT pg_sleep(:s)"), {"s": seconds})
    return {"slept": str(seconds)}


def mount(app: FastAPI) -> FastAPI:
    app.include_router(router)
    return app
