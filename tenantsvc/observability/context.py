"""Per-request context for logs: request id and tenant, carried by contextvars so every log
line of a request (and of work it starts) carries them without passing them around."""

import re
import uuid
from contextvars import ContextVar

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
tenant_slug: ContextVar[str | None] = ContextVar("tenant_slug", default=None)

_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")


def new_request_id(offered: str | None) -> str:
    """A client's X-Request-ID is kept when it is a sane token (tracing across services);
    anything else is replaced, so logs never carry arbitrary client bytes."""
    if offered is not None and _CLIENT_REQUEST_ID.fullmatch(offered):
        return offered
    return uuid.uuid4().hex
