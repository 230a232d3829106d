"""How errors appear in the API description: every one as an RFC 9457 problem body
(``problems.problem_response`` writes them), so clients generated from /openapi.json expect
what the service answers."""

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from tenantsvc.problems import MEDIA_TYPE


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ProblemBody(BaseModel):
    """What every error response holds, for the OpenAPI schema (``problem_response`` writes
    it)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldError] | None = None  # 422 only: each failed check and where


_MEANINGS = {
    400: "Missing, malformed or repeated X-Tenant-ID or Authorization; a bad consistency token",
    401: "No API key, or not a valid one (WWW-Authenticate: Bearer)",
    403: "The key belongs to another tenant, or the tenant is suspended",
    404: "No such tenant, or no such resource in the tenant",
    409: "The request conflicts with the tenant's data",
    413: "The body is larger than the service accepts",
    422: "The request failed validation: `errors` says where",
    503: "The database is unavailable: retry after Retry-After seconds",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for routes: each status as a problem body."""
    schema = {"$ref": "#/components/schemas/ProblemBody"}
    return {s: {"description": _MEANINGS[s], "content": {MEDIA_TYPE: {"schema": schema}}}
            for s in statuses}  # fmt: skip


# What any tenant route may answer before or besides its own outcome.
TENANT_PROBLEMS = problems(400, 401, 403, 404, 422, 503)


def document(app: FastAPI) -> None:
    """Adds ``ProblemBody`` to the OpenAPI components, where ``problems`` points: no route
    returns it as a model, so FastAPI would not list it by itself."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = generate()  # which FastAPI keeps as app.openapi_schema
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        body = ProblemBody.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(body.pop("$defs", {}))
        schemas["ProblemBody"] = body
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
