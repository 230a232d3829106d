"""CORS for browser clients on other origins (``TENANTSVC_CORS_ORIGINS``), off by default.

Starlette's middleware, outside the tenant middleware: a browser's preflight (``OPTIONS`` with
``Access-Control-Request-Method``) carries no tenant and no key, so it must be answered before
they are asked for; and a 401 or 403 must carry the CORS headers too, or the page cannot read
why it was refused. No credentials mode: the key travels in ``Authorization``, not in a cookie.
"""

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from tenantsvc.settings import Settings

# What a client sends and reads beyond the CORS-safelisted headers.
REQUEST_HEADERS = ["Authorization", "Content-Type", "X-Tenant-ID", "Idempotency-Key", "If-Match",
                   "If-None-Match", "X-Consistency-Token", "X-Request-ID"]  # fmt: skip
RESPONSE_HEADERS = ["ETag", "Retry-After", "Idempotent-Replayed", "X-Consistency-Token",
                    "X-Request-ID", "X-Served-By", "WWW-Authenticate", "Allow"]  # fmt: skip
METHODS = ["GET", "HEAD", "POST", "PATCH", "DELETE"]


def allow_origins(app: FastAPI, settings: Settings) -> None:
    """Add the CORS layer when origins are configured; without, nothing (no cost per request)."""
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origin_list, allow_methods=METHODS,
            allow_headers=REQUEST_HEADERS, expose_headers=RESPONSE_HEADERS, max_age=3600,
        )  # fmt: skip
