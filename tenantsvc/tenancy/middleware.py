"""Pure ASGI middleware: ``X-Tenant-ID`` + bearer key -> a whitelisted tenant in the scope.

The header is only ever used as a dictionary key into the registry snapshot; the schema name
comes from the registry row. Malformed values are refused before anything touches the database.
"""

import re
from collections.abc import Iterable

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from tenantsvc.observability.context import tenant_slug
from tenantsvc.problems import (
    Problem,
    allowed_methods,
    database_unavailable,
    problem_response,
    unavailable,
)
from tenantsvc.tenancy.keys import bearer, hash_key
from tenantsvc.tenancy.models import SERVED, TenantStatus
from tenantsvc.tenancy.registry import Tenant, TenantRegistry
from tenantsvc.tenancy.slugs import is_valid_slug

PUBLIC_PATHS = frozenset(
    {"/healthz", "/readyz", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)  # no tenant: /metrics asks for the scraper's own token instead (health.py)
_KEY = re.compile(r"[A-Za-z0-9_\-]{16,128}")  # what a key can be, before it is hashed
_INVALID_KEY = "the API key is not valid"


class TenantRejected(Problem):
    pass


def unknown_tenant(slug: str) -> TenantRejected:
    return TenantRejected(404, "Unknown tenant", f"no tenant {slug!r}")


def _not_ready(slug: str) -> TenantRejected:
    """A tenant held back from service while its schema is brought to the code's revision
    (restored from an archive, imported from an older export): its key holders are told to
    retry, where a 404 told them their tenant was gone."""
    detail = f"tenant {slug!r} is being migrated to the current schema: retry later"
    return TenantRejected(503, "Tenant unavailable", detail, {"Retry-After": "30"})


def _single_header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    """The header's value, None when absent; more than one copy is refused as ambiguous.

    Without the whitespace around it, which RFC 9110 says is not part of the value: uvicorn's
    httptools parser hands it over, so ``X-Tenant-ID: acme `` was a 400 (h11 strips it)."""
    values = [v for k, v in headers if k == name]
    if len(values) > 1:
        raise TenantRejected(400, "Bad request", f"more than one {name.decode()} header")
    return values[0].decode("latin-1").strip(" \t") if values else None


def _served(tenant: Tenant | None) -> Tenant | None:
    """The tenant if requests may reach it (a suspended one is answered 403 later)."""
    return tenant if tenant is not None and tenant.status in SERVED else None


async def still_served(registry: TenantRegistry, tenant: Tenant) -> bool:
    """Asked when a request found its tenant's tables gone: archived (or purged) after this
    worker's snapshot was taken. One coalesced version check brings the snapshot up to date:
    the archive renamed the schema and marked the row in one transaction. A purged tenant's
    slug may already be another tenant's: that one is not this one."""
    await registry.refresh_on_miss()
    now = _served(registry.get(tenant.slug))
    return now is not None and now.id == tenant.id


async def resolve_tenant(registry: TenantRegistry, scope: Scope) -> tuple[Tenant, int]:
    """The request's tenant and the id of the key it presented."""
    headers = scope["headers"]
    slug = _single_header(headers, b"x-tenant-id")
    if slug is None:
        raise TenantRejected(400, "Missing tenant", "the X-Tenant-ID header is required")
    authorization = _single_header(headers, b"authorization") or ""
    # A pair verified under the current snapshot skips the pattern checks and the key digest.
    verified = registry.snapshot.verified.get((slug, authorization))
    if verified is not None:
        return verified
    verified = await _verify(registry, slug, authorization)
    if authorization[7:8] != " ":  # one space after Bearer: what bounds the cache (registry)
        registry.snapshot.verified[slug, authorization] = verified  # the snapshot _verify used
    return verified


async def _verify(registry: TenantRegistry, slug: str, authorization: str) -> tuple[Tenant, int]:
    """The key is checked before the tenant is looked at, so that whether a tenant exists is
    told only to a holder of its key: without one, an unknown slug gets the 401 a known one
    gets, where a 404 let anyone list a service's customers by trying names."""
    if not is_valid_slug(slug):
        raise TenantRejected(400, "Malformed tenant", "X-Tenant-ID is not a valid tenant slug")
    credential = bearer(authorization)
    if credential is None:  # no header, or another scheme: the client lacks a key
        raise TenantRejected(401, "Unauthorized", "an 'Authorization: Bearer <key>' is required")
    if not _KEY.fullmatch(credential):  # too short, a character no key has: a wrong key
        raise TenantRejected(401, "Unauthorized", _INVALID_KEY)
    digest = hash_key(credential)
    owner = registry.key_owner(digest)
    if owner is None and registry.get(slug) is None:
        # A tenant created a moment ago, with its first key: served at once. A guessed key
        # for a known tenant costs no query; the next poll picks up a key issued a moment ago.
        await registry.refresh_on_miss()
        owner = registry.key_owner(digest)
    if owner is None:
        raise TenantRejected(401, "Unauthorized", _INVALID_KEY)
    if owner.slug != slug:
        raise TenantRejected(403, "Forbidden", "the API key belongs to another tenant")
    found = registry.get(slug)
    tenant = _served(found)
    if tenant is None and found is not None and found.status == TenantStatus.PROVISIONING:
        raise _not_ready(slug)
    if tenant is None:  # the key's own tenant, archived: told to the holder of its key only
        raise unknown_tenant(slug)
    if tenant.status == TenantStatus.SUSPENDED:
        raise TenantRejected(403, "Tenant suspended", f"tenant {slug!r} is suspended")
    return tenant, owner.key_id


class TenantMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            await _options(scope)(scope, receive, send)
            return
        state = scope["state"]
        try:
            tenant, key_id = await resolve_tenant(state["registry"], scope)
        except TenantRejected as rejected:
            headers = {"WWW-Authenticate": "Bearer"} if rejected.status == 401 else rejected.headers
            response = problem_response(rejected.status, rejected.title, rejected.detail, headers)
            await response(scope, receive, send)
            return
        except Exception as exc:
            # A slug or key not in the snapshot asks the registry (refresh_on_miss): with the
            # database away that was a 500, out here where the app's handlers do not reach.
            if not database_unavailable(exc):
                raise
            await unavailable(exc)(scope, receive, send)
            return
        # A new state dict for this request: the lifespan state may be one dict shared by every
        # request (servers are not required to copy it), and writing the tenant into a shared
        # dict would hand concurrent requests each other's tenant.
        state["activity"].served(tenant.id, key_id, scope["method"])
        scope["state"] = {**state, "tenant": tenant}
        tenant_slug.set(tenant.slug)
        await self.app(scope, receive, send)


def _options(scope: Scope) -> Response:
    """``OPTIONS``: what the path takes, in ``Allow``, asking for no tenant (the routes are in
    /openapi.json for anyone). A browser's CORS preflight is answered before this, when CORS is
    on (``cors.py``)."""
    methods = allowed_methods(scope["app"], scope["path"])
    if not methods:
        return problem_response(404, "Not Found", f"no such path: {scope['path']}")
    return Response(status_code=204, headers={"Allow": ", ".join(sorted(methods))})
