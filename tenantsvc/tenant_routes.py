"""The route class of every tenant route: a request whose transaction the database refused and
rolled back (statements a migration made stale, a deadlock, a serialization failure) is served
again, from the start, in a new transaction (see ``db/stale.py`` for why that is safe).

A read a replica answered "does not exist" (it has not replayed the tenant's latest DDL yet:
``db/replicas.py``) is served again too, on the primary.

Only those errors are replayed, at most ``ATTEMPTS`` times in all: a request failing for any
other reason fails once, as before. The request body was read on the first attempt and
Starlette keeps it, so the replay reads the same bytes.

A tenant archived after this worker's registry snapshot was taken is still served until the
next poll, but its schema has been renamed away: its statements find no tables (and never the
archived data). Such a request answers what the next one will, a 404 for an unknown tenant,
instead of a 500.
"""

import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from tenantsvc.db.errors import (
    NOT_YET_REPLAYED,
    ROLE_MISSING,
    UNDEFINED_COLUMN,
    UNDEFINED_TABLE,
    sqlstate,
)
from tenantsvc.db.stale import ATTEMPTS, is_replayable, is_stale_statement, mark_stale
from tenantsvc.deps import READ_FROM_PRIMARY
from tenantsvc.observability.metrics import REPLAYS
from tenantsvc.problems import Problem
from tenantsvc.query_names import only_known
from tenantsvc.tenancy.errors import first_line
from tenantsvc.tenancy.middleware import still_served, unknown_tenant

log = logging.getLogger(__name__)
Handler = Callable[[Request], Awaitable[Response]]


def replaying(handler: Handler, own_stack: bool = True) -> Handler:
    async def serve(request: Request) -> Response:
        attempt = 1
        while True:
            try:
                if own_stack:
                    return await _attempt(handler, request)
                return await handler(request)
            except Exception as exc:
                reason = _replay_reason(request, exc)
                if reason is None or attempt == ATTEMPTS:
                    await _unless_tenant_gone(request, exc)
                    raise
            if reason == "stale_statement":
                mark_stale()
            elif reason == "replica_behind":
                request.state[READ_FROM_PRIMARY] = True
            REPLAYS.labels(reason).inc()
            log.info("serving %s again: %s", request.url.path, reason)
            attempt += 1

    return serve


def _replay_reason(request: Request, exc: Exception) -> str | None:
    """Why the request is worth serving again, if it is. A read from a replica that has not yet
    replayed its tenant's latest DDL (created, restored or migrated moments ago) is read again
    from the primary, which has it."""
    if is_stale_statement(exc):
        return "stale_statement"
    if is_replayable(exc):
        return "deadlock_or_conflict"
    served_by = request.scope.get("state", {}).get("served_by", "primary")
    if served_by != "primary" and sqlstate(exc) in NOT_YET_REPLAYED:
        return "replica_behind"
    return None


FUNCTION_STACK = "fastapi_function_astack"  # FastAPI's own key (fastapi/routing.py)


async def _attempt(handler: Handler, request: Request) -> Response:
    """One attempt, with its own stack for the dependencies of ``scope="function"`` (the
    tenant's transaction and its place, ``deps.py``): they end here, committed or rolled back,
    before the handler's outcome is known, as they would in FastAPI's own stack (which exits
    after the handler returns, before the response is sent). FastAPI's stack encloses this
    wrapper, so a failed attempt would otherwise still hold its connection and place while
    the replay runs."""
    scope = request.scope
    outer = scope.get(FUNCTION_STACK)
    try:
        async with AsyncExitStack() as stack:
            scope[FUNCTION_STACK] = stack
            return await handler(request)
    finally:
        scope[FUNCTION_STACK] = outer


# What a served tenant lacks, by the error that found it: for the client, and for the log.
_MISSING = {
    UNDEFINED_TABLE: ("its tables are missing", "its schema lacks a table"),
    ROLE_MISSING: ("its database role is missing",
                   "its database role is missing (`tenantctl isolate {slug}` makes it again)"),
    # A tenant behind the revisions this build is written for (the code deployed before its
    # migration, or one that could not migrate): each write fails whole, so nothing is torn.
    UNDEFINED_COLUMN: ("its tables are behind this version of the service",
                       "its tables lack a column this build uses (`tenantctl status` shows its "
                       "revision; `tenantctl migrate {slug}`)"),
}  # fmt: skip


async def _unless_tenant_gone(request: Request, exc: Exception) -> None:
    """A tenant whose tables (or role) are missing: archived or purged since the snapshot (a
    404, as the next request will get), or still served with a schema that lacks them (migrated
    down to base, a table renamed under the code) or without its role (dropped by hand): a 503
    that says so, and an error in the log, not a 500."""
    missing = _MISSING.get(sqlstate(exc))
    if missing is None:
        return
    slug = request.state.tenant.slug
    if not await still_served(request.state.registry, request.state.tenant):
        raise unknown_tenant(slug) from None
    told, logged = missing
    log.error("tenant %r is served, but %s: %s", slug, logged.format(slug=slug), first_line(exc))
    raise Problem(503, "Tenant unavailable", f"tenant {slug!r} cannot be served: {told}") from exc


class TenantRoute(APIRoute):
    def get_route_handler(self) -> Any:
        return only_known(self, replaying(super().get_route_handler()))
