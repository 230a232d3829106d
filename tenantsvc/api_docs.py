"""What the API description says beyond FastAPI's own generation, so clients generated from
/openapi.json (and /docs' "Authorize") send and expect what the service does: every error as
an RFC 9457 problem body (``problems.problem_response`` writes them), and on every tenant route
the ``X-Tenant-ID`` header and the bearer key that the middleware reads, not the routes."""

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from tenantsvc.deps import CONSISTENCY_HEADER
from tenantsvc.problems import MEDIA_TYPE
from tenantsvc.tenancy.middleware import PUBLIC_PATHS
from tenantsvc.tenancy.slugs import SLUG_PATTERN


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ShortLine(BaseModel):
    product_id: int
    requested: int  # the order's quantity of the product, its lines added up
    available: int  # the product's stock when the order was refused


class ProblemBody(BaseModel):
    """What every error response holds, for the OpenAPI schema (``problem_response`` writes
    it)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldError] | None = None  # 422 only: each failed check and where
    short: list[ShortLine] | None = None  # 409 "Insufficient stock" only: the lines short


_MEANINGS = {
    400: "Missing, malformed or repeated X-Tenant-ID or Authorization; a bad consistency token",
    401: "No API key, or not a valid one (WWW-Authenticate: Bearer)",
    403: "The key belongs to another tenant, or the tenant is suspended",
    404: "No such resource in the tenant, or the key's own tenant archived",
    409: "The request conflicts with the tenant's data (an order short of stock: `short` names "
    "its lines)",
    412: "If-Match names a version of the row that is no longer current (its ETag is sent)",
    413: "The body is larger than the service accepts",
    415: "The body does not say it is JSON (Content-Type: application/json), or is compressed "
    "(Content-Encoding): it is read as sent",
    422: "The request failed validation: `errors` says where",
    429: "Too many of this tenant's requests in progress at once: retry after Retry-After seconds",
    503: "The database is unavailable, (a write) the tenant is read-only for maintenance, or the "
    "server is shutting down: retry after Retry-After seconds",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for routes: each status as a problem body."""
    schema = {"$ref": "#/components/schemas/ProblemBody"}
    return {s: {"description": _MEANINGS[s], "content": {MEDIA_TYPE: {"schema": schema}}}
            for s in statuses}  # fmt: skip


# A creating route's 201: what was made, and where it now lives.
CREATED: dict[int | str, dict[str, Any]] = {
    201: {
        "description": "Created",
        "headers": {"Location": {"description": "The new resource's path (`/orders/42`)",
                                 "schema": {"type": "string"}}},
    }
}  # fmt: skip


# What any tenant route may answer before or besides its own outcome.
TENANT_PROBLEMS = problems(400, 401, 403, 404, 422, 429, 503)


BEARER = {"type": "http", "scheme": "bearer",
          "description": "The tenant's API key (`tenantctl keys create <slug>`)"}  # fmt: skip
TENANT_HEADER = {
    "name": "X-Tenant-ID", "in": "header", "required": True,
    "description": "The tenant's slug; its API key goes in Authorization: Bearer",
    "schema": {"type": "string", "pattern": f"^{SLUG_PATTERN.pattern}$"},
}  # fmt: skip
TOKEN_HEADER = {
    "name": CONSISTENCY_HEADER, "in": "header", "required": False,
    "description": "The token a write answered with: this read sees that write "
    "(read-your-writes across replicas)",
    "schema": {"type": "string"},
}  # fmt: skip


def document(app: FastAPI) -> None:
    """Adds to the generated description what no route declares: ``ProblemBody``, where
    ``problems`` points (no route returns it as a model); the bearer scheme; the tenant header
    on every tenant route, and the consistency token on their reads."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = generate()  # which FastAPI keeps as app.openapi_schema
        components = spec.setdefault("components", {})
        body = ProblemBody.model_json_schema(ref_template="#/components/schemas/{model}")
        components.setdefault("schemas", {}).update(body.pop("$defs", {}), ProblemBody=body)
        components.setdefault("securitySchemes", {})["tenantKey"] = BEARER
        for path, operations in spec["paths"].items():
            if path not in PUBLIC_PATHS:
                for method, operation in operations.items():
                    _as_tenant_route(operation, reads=method == "get")
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


def _as_tenant_route(operation: dict[str, Any], reads: bool) -> None:
    operation["security"] = [{"tenantKey": []}]
    if "requestBody" in operation:
        operation["responses"].update({str(k): v for k, v in problems(415).items()})
    headers = [TENANT_HEADER, TOKEN_HEADER] if reads else [TENANT_HEADER]
    operation["parameters"] = [*headers, *operation.get("parameters", [])]
