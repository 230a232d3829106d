"""Liveness and readiness; neither needs a tenant."""

import secrets

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import SecretStr
from sqlalchemy import column, func, select, table

from tenantsvc.api_docs import problems
from tenantsvc.db.session import Database
from tenantsvc.observability import metrics
from tenantsvc.problems import problem_response
from tenantsvc.tenancy.keys import bearer
from tenantsvc.tenancy.slugs import SHARED_SCHEMA

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


_VERSIONS = table("alembic_version", column("version_num"), schema=SHARED_SCHEMA)
_SHARED_VERSION = select(func.max(_VERSIONS.c.version_num))


@router.get("/readyz", response_model=None, responses=problems(503))
async def readyz(request: Request) -> dict[str, str] | Response:
    """Ready only when the database answers and the shared track is at this build's head:
    a new build is not sent traffic before `tenantctl migrate-all` has run."""
    database: Database = request.state.db
    try:
        async with database.engine.connect() as conn:
            shared = (await conn.execute(_SHARED_VERSION)).scalar_one()
    except Exception:
        return problem_response(503, "Not ready", "the database is unreachable")
    expected = request.state.shared_head
    if shared != expected:
        detail = f"shared track at {shared}, this build needs {expected}: run tenantctl migrate-all"
        return problem_response(503, "Not ready", detail)
    return {"status": "ready"}


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(request: Request) -> Response:
    refused = _scrape_refused(request.state.metrics_token, request.headers.get("authorization"))
    if refused is not None:
        return refused
    database: Database = request.state.db
    metrics.observe_pools(database.engines())
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)


def _scrape_refused(token: SecretStr | None, authorization: str | None) -> Response | None:
    """/metrics names every tenant a worker served and how busy each is: the scraper's token,
    or nothing. The API's port is the one clients reach, and any of them could read it."""
    if token is None:
        return problem_response(404, "Not found", "metrics are off: set TENANTSVC_METRICS_TOKEN")
    sent = bearer((authorization or "").strip(" \t"))
    expected = token.get_secret_value().encode()
    if sent is None or not secrets.compare_digest(sent.encode("latin-1"), expected):
        detail = "scrape with Authorization: Bearer <TENANTSVC_METRICS_TOKEN>"
        return problem_response(401, "Unauthorized", detail, {"WWW-Authenticate": "Bearer"})
    return None
