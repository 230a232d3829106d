"""Liveness and readiness; neither needs a tenant."""

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import text

from tenantsvc.db.session import Database
from tenantsvc.problems import problem_response

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
async def readyz(request: Request) -> dict[str, str] | Response:
    database: Database = request.state.db
    try:
        async with database.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:
        return problem_response(503, "Not ready", "the database is unreachable")
    return {"status": "ready"}
