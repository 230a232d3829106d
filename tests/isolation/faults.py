"""Test-only endpoints that fail on purpose inside a tenant transaction, and a check of which
schema a request really runs in. Mounted only by the isolation tests."""

import asyncio

from fastapi import APIRouter, FastAPI
from sqlalchemy import text

from tenantsvc.deps import CurrentTenant, DbSession

router = APIRouter(prefix="/_fault")


@router.get("/whoami")
async def whoami(session: DbSession, tenant: CurrentTenant) -> dict[str, object]:
    """The schema the transaction resolves to, the role it runs as, and a marker row read
    through them."""
    path, role = (
        await session.execute(text("SELECT current_setting('search_path'), current_user"))
    ).one()
    names = (await session.execute(text("SELECT name FROM products ORDER BY id LIMIT 3"))).scalars()
    return {"tenant": tenant.slug, "search_path": path, "role": role, "names": list(names)}


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
