"""Outermost pure ASGI middleware: request id, one structured access-log line per request, and
the request metrics, for every request including the ones refused before routing."""

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tenantsvc.observability import metrics
from tenantsvc.observability.context import new_request_id, request_id, tenant_slug

# In a request's scope: the status the server itself sent the client instead of the app's
# answer (a body that did not arrive in time: request_head.py). The app answered what it made
# of a body cut off, which is not what the client got.
SERVER_ANSWERED = "tenantsvc.server_answered"

access_log = logging.getLogger("tenantsvc.access")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


# Every tenant's GET /products/1 has the same URL: the tenant is in a header. A shared cache
# must not store an answer to a request with Authorization (RFC 9111 3.5), but one that is
# misconfigured, or keys by URL alone, would hand one tenant's rows to the next; so each answer
# to a tenant says it is for that client only, to be checked again (its ETag makes that a 304),
# and what it varies by.
_TENANT_ANSWER = [
    (b"cache-control", b"private, no-cache"),
    (b"vary", b"X-Tenant-ID, Authorization"),
]


def _extra_headers(scope: Scope, rid: str) -> list[tuple[bytes, bytes]]:
    """The request id, and what the request's dependencies left in its state: where it was
    served from and, after a write, the read-your-writes token."""
    headers = [(b"x-request-id", rid.encode())]
    state = scope.get("state", {})
    if "tenant" in state:
        headers += _TENANT_ANSWER
    if served_by := state.get("served_by"):
        headers.append((b"x-served-by", served_by.encode()))
    if token := state.get("consistency_token"):
        headers.append((b"x-consistency-token", token.encode()))
    return headers


class RequestMiddleware:
    def __init__(self, app: ASGIApp, max_tenant_labels: int) -> None:
        self.app = app
        self.tenant_label = metrics.TenantLabels(max_tenant_labels)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = new_request_id(_header(scope, b"x-request-id"))
        rid_token, tenant_token = request_id.set(rid), tenant_slug.set(None)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), *_extra_headers(scope, rid)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            status = scope.get(SERVER_ANSWERED, status)
            self._record(scope, status, time.perf_counter() - started)
            request_id.reset(rid_token)
            tenant_slug.reset(tenant_token)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        # The route template, never the raw path: ids in paths would explode cardinality.
        template = getattr(route, "path", "unmatched")
        method = scope["method"]
        tenant = self.tenant_label(tenant_slug.get())
        metrics.REQUESTS.labels(template, method, str(status), tenant).inc()
        metrics.LATENCY.labels(template, method).observe(seconds)
        access_log.info(
            "request",
            extra={"method": method, "route": template, "status": status,
                   "duration_ms": round(seconds * 1000, 2)},
        )  # fmt: skip
