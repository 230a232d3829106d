"""The query-name check on routes an app author adds: a query model's fields are names the
route takes (FastAPI reads them from the query one by one), and the check stays out of the
way of what FastAPI itself accepts; and the service's error answers leave such a route's own
errors as the route wrote them."""

from typing import Annotated

import httpx
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query
from pydantic import BaseModel, Field

from tenantsvc import problems
from tenantsvc.tenant_routes import TenantRoute


class Filters(BaseModel):
    color: str | None = None
    size: int = 1
    kind: str | None = Field(default=None, alias="type")


def _paging(after_id: int = 0) -> int:
    return after_id


router = APIRouter(route_class=TenantRoute)


@router.get("/tagged")
async def tagged(
    tag: Annotated[list[str] | None, Query()] = None, limit: int = 10
) -> dict[str, object]:
    return {"tag": tag, "limit": limit}


@router.get("/dated")
async def dated(when: str) -> dict[str, object]:
    try:
        return {"day": int(when)}
    except ValueError as exc:
        raise HTTPException(400, "give the day as a number") from exc


def _client(with_problems: bool = False) -> httpx.AsyncClient:
    """A client of these routes on a bare app; ``with_problems``: with the service's error
    answers (``problems.install``), still without its tenant middleware."""
    app = FastAPI()
    if with_problems:
        problems.install(app)
    app.include_router(router)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


@router.get("/things")
async def things(
    filters: Annotated[Filters, Query()], after_id: Annotated[int, Depends(_paging)]
) -> dict[str, object]:
    return {"size": filters.size, "type": filters.kind, "after_id": after_id}


async def test_a_query_models_fields_and_a_dependencys_parameters_are_taken() -> None:
    async with _client() as client:
        taken = await client.get("/things", params={"color": "red", "size": "2", "type": "x",
                                                    "after_id": "5"})  # fmt: skip
        assert (taken.status_code, taken.json()) == (200, {"size": 2, "type": "x", "after_id": 5})
        refused = await client.get("/things", params={"colour": "red"})
    assert refused.status_code == 422
    [error] = refused.json()["detail"]
    assert error["loc"] == ["query", "colour"]
    assert error["msg"] == "Unknown query parameter: this path takes after_id, color, size, type"


async def test_only_a_list_parameter_may_repeat() -> None:
    async with _client() as client:
        many = await client.get("/tagged", params=[("tag", "a"), ("tag", "b"), ("limit", "2")])
        assert (many.status_code, many.json()) == (200, {"tag": ["a", "b"], "limit": 2})
        twice = await client.get("/tagged", params=[("tag", "a"), ("limit", "2"), ("limit", "3")])
    assert twice.status_code == 422
    [error] = twice.json()["detail"]
    assert (error["loc"], error["type"]) == (["query", "limit"], "repeated")


async def test_an_apps_own_400_with_a_cause_stays_its_own() -> None:
    """The service answers FastAPI's unreadable-body 400 as a 422 json_invalid; a route's own
    ``raise HTTPException(400, ...) from exc`` is not that, and keeps its status and words."""
    async with _client(with_problems=True) as client:
        refused = await client.get("/dated", params={"when": "tuesday"})
    assert (refused.status_code, refused.json()["title"]) == (400, "give the day as a number")
