"""Hostile and malformed input: each gets its documented 4xx problem body, never a 5xx, and
tenant headers that are refused never cost a single query."""

import gzip
import json
import re
from collections.abc import AsyncIterator, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantsvc.orders.router import router as orders
from tenantsvc.products.router import router as products
from tenantsvc.tenancy.admin import create_key, revoke_key, set_status
from tenantsvc.tenancy.models import TenantStatus
from tenantsvc.tenant_routes import TenantRoute
from tenantsvc.users.router import router as users
from tests.conftest import Running, TenantFactory, TenantHandle

HOSTILE_TENANT_IDS = [
    b"", b" ", b"\t", b"x" * 41, b"x" * 5000, b"ACME", b"Acme",
    "\u0430cme".encode(), "\uff41\uff43\uff4d\uff45".encode(), "acme\u200b".encode(),
    b"public", b"pg_catalog", b"information_schema", b"tenant_x", b"tenant_acme", b"pg_temp",
    b"'acme'", b'"acme"', b"acme'; DROP SCHEMA public CASCADE; --", b"acme;", b"acme--",
    b"acme,public", b"public,acme", b"$user", b"acme\x00", b"\x00", b"acme\x01", b"acme\r\nX: y",
    b"acme\x7f", b"../acme", b"acme%00", b"a", b"1acme", b"_acme", b"acme-corp", b"acme corp",
]  # fmt: skip


@pytest.fixture(autouse=True)
async def quiet_registry(running: Running) -> AsyncIterator[None]:
    """The registry's background poll would show up as queries: pause it, with a snapshot
    that already knows every tenant this module's fixtures created."""
    registry = running.state["registry"]
    await registry.stop()
    yield
    await registry.start()


async def known(running: Running, *tenants: TenantHandle) -> None:
    await running.state["registry"].refresh()


@contextmanager
def no_queries(running: Running) -> Iterator[list[str]]:
    sent: list[str] = []
    engine = running.state["db"].engine.sync_engine

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert sent == [], sent


async def raw_request(running: Running, headers: list[tuple[bytes, bytes]]) -> tuple[int, Any]:
    """Straight through ASGI, so header bytes no HTTP client would send still arrive."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": "/products", "raw_path": b"/products", "query_string": b"",
        "root_path": "", "headers": headers, "client": ("127.0.0.1", 1), "server": ("t", 80),
        "state": dict(running.state),
    }  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    await running.app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    content_type = dict(start["headers"]).get(b"content-type")
    assert content_type == b"application/problem+json"
    return start["status"], json.loads(body)


@pytest.mark.parametrize("value", HOSTILE_TENANT_IDS, ids=repr)
async def test_hostile_tenant_ids_are_400_without_a_query(
    running: Running, tenant_a: TenantHandle, value: bytes
) -> None:
    auth = (b"authorization", f"Bearer {tenant_a.api_key}".encode())
    await known(running, tenant_a)
    with no_queries(running):
        status, body = await raw_request(running, [(b"x-tenant-id", value), auth])
    assert status == 400
    assert body["status"] == 400


HOSTILE_AUTHORIZATIONS = [
    b"", b" ", b"Bearer", b"Bearer ", b"Bearer  x", b"bearer", b"Token abc", b"Basic dXNlcjpwYXNz",
    b"Bearer tsk_" + b"A" * 300, b"Bearer tsk_'; DROP TABLE x; --", b"Bearer tsk_abc\x00def",
    b"Bearer tsk_not_a_real_key_at_all_0000", b"Bearer \xff\xfe", b"Bearer a,b",
]  # fmt: skip


@pytest.mark.parametrize("value", HOSTILE_AUTHORIZATIONS, ids=repr)
async def test_hostile_authorization_is_401_without_a_query(
    running: Running, tenant_a: TenantHandle, value: bytes
) -> None:
    tenant = (b"x-tenant-id", tenant_a.slug.encode())
    await known(running, tenant_a)
    with no_queries(running):
        status, _ = await raw_request(running, [tenant, (b"authorization", value)])
    assert status == 401


async def test_duplicated_headers_are_400(running: Running, tenant_a: TenantHandle) -> None:
    tenant, auth = tenant_a.slug.encode(), f"Bearer {tenant_a.api_key}".encode()
    await known(running, tenant_a)
    for headers in (
        [(b"x-tenant-id", tenant), (b"x-tenant-id", tenant), (b"authorization", auth)],
        [(b"x-tenant-id", tenant), (b"authorization", auth), (b"authorization", auth)],
    ):
        with no_queries(running):
            status, _ = await raw_request(running, headers)
        assert status == 400


async def test_keys_of_others_revoked_and_suspended_without_a_query(
    running: Running, engine: AsyncEngine, tenant_factory: TenantFactory
) -> None:
    a, b, suspended = [await tenant_factory(p) for p in ("ha", "hb", "hs")]
    async with engine.begin() as conn:
        key_id, revoked = await create_key(conn, a.slug)
        await revoke_key(conn, a.slug, key_id)
        await set_status(conn, suspended.slug, TenantStatus.SUSPENDED)
    await running.state["registry"].refresh()
    cases = [
        (a.slug, b.api_key, 403),
        (a.slug, suspended.api_key, 403),
        (a.slug, revoked, 401),
        (suspended.slug, suspended.api_key, 403),
        (suspended.slug, a.api_key, 403),
    ]
    for slug, key, expected in cases:
        headers = [(b"x-tenant-id", slug.encode()), (b"authorization", f"Bearer {key}".encode())]
        with no_queries(running):
            status, _ = await raw_request(running, headers)
        assert status == expected, (slug, expected)


BAD_BODIES: list[tuple[str, str, Any]] = [
    ("/orders", "post", {"user_id": 1, "items": [{"product_id": 1, "quantity": 2**40}]}),
    ("/orders", "post", {"user_id": -1, "items": [{"product_id": 1, "quantity": 1}]}),
    ("/orders", "post", {"user_id": 1, "items": [{"product_id": 1, "quantity": 1.5}]}),
    ("/orders", "post", {"user_id": 1, "items": [{"product_id": 1, "quantity": True}]}),
    ("/orders", "post", {"user_id": 1, "items": [{"product_id": 1, "quantity": 1}] * 10_000}),
    ("/orders", "post", {"user_id": 1, "items": "all"}),
    ("/orders", "post", {"user_id": 1, "items": [{"product_id": 1, "quantity": 1, "x": 1}]}),
    ("/products", "post", {"name": "", "price_cents": 1, "stock": 1}),
    ("/products", "post", {"name": "x" * 201, "price_cents": 1, "stock": 1}),
    ("/products", "post", {"name": "x", "price_cents": -5, "stock": 1}),
    ("/products", "post", {"name": "x", "price_cents": 1, "stock": 2**31}),
    ("/products", "post", {"name": None, "price_cents": 1, "stock": 1}),
    ("/products/bulk", "post", {"items": []}),
    ("/products/bulk", "post", {"items": [{"name": "x", "price_cents": 1, "stock": 1}] * 10_001}),
    ("/users", "post", {"email": "a@b.c", "name": "x" * 10_000}),
    # PostgreSQL text cannot hold NUL: a 422 here, not the server's error as a 500.
    ("/users", "post", {"email": "a@b.c", "name": "a\u0000b"}),
    ("/users", "post", {"email": "a\u0000@b.c", "name": "x"}),
    ("/products", "post", {"name": "a\u0000", "price_cents": 1, "stock": 1}),
    ("/products/bulk", "post", {"items": [{"name": "\u0000", "price_cents": 1, "stock": 1}]}),
    ("/products/1", "patch", {"name": "a\u0000b"}),
    ("/products/1", "patch", {"stock": -1}),
    ("/products/0", "get", None),
    ("/products/99999999999999999999", "get", None),
    ("/products/abc", "get", None),
]


@pytest.mark.parametrize(("path", "method", "body"), BAD_BODIES, ids=lambda v: str(v)[:40])
async def test_bad_bodies_are_422_and_write_nothing(
    client: httpx.AsyncClient, tenant_a: TenantHandle, path: str, method: str, body: Any
) -> None:
    response = await client.request(method.upper(), path, json=body, headers=tenant_a.headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert (await client.get("/products", headers=tenant_a.headers)).json()["items"] == []
    assert (await client.get("/users", headers=tenant_a.headers)).json()["items"] == []


async def test_malformed_json_and_wrong_content_are_4xx(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    json_headers = {**tenant_a.headers, "content-type": "application/json"}
    for content in (b"{", b"[]", b"null", b'{"name": "x", "price_cents": 1, "stock": 1,}'):
        response = await client.post("/products", content=content, headers=json_headers)
        assert response.status_code == 422, content
        assert response.headers["content-type"] == "application/problem+json"
    assert (await client.get("/products", headers=tenant_a.headers)).json()["items"] == []


@pytest.mark.parametrize("path", ["/products", "/orders"])  # a FastAPI route, a plain one
@pytest.mark.parametrize(
    "content",
    [b"\xff", b'{"name": "\xff\xfe", "price_cents": 1, "stock": 1}', b"[" * 5000 + b"]" * 5000],
    ids=["not text", "not UTF-8 inside", "nested too deep"],
)
async def test_json_that_cannot_be_read_is_the_same_422_on_every_route(
    client: httpx.AsyncClient, tenant_a: TenantHandle, path: str, content: bytes
) -> None:
    """Not a syntax error, yet no JSON: FastAPI's routes answered a bare 400 "There was an
    error parsing the body", where the plain routes (and every other bad JSON) say 422
    json_invalid and why."""
    headers = {**tenant_a.headers, "content-type": "application/json"}
    response = await client.post(path, content=content, headers=headers)
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert (error["type"], error["msg"][:13]) == ("json_invalid", "Invalid JSON:"), error


_VALID_BODIES = [
    ("/orders", {"user_id": 1, "items": [{"product_id": 1, "quantity": 1}]}),  # a plain route
    ("/users", {"email": "a@b.c", "name": "x"}),
    ("/products", {"name": "x", "price_cents": 1, "stock": 1}),
    ("/products/bulk", {"items": [{"name": "x", "price_cents": 1, "stock": 1}]}),
]


@pytest.mark.parametrize(("path", "body"), _VALID_BODIES, ids=[p for p, _ in _VALID_BODIES])
@pytest.mark.parametrize(
    "kind", [None, "text/plain", "application/x-www-form-urlencoded", "text/json"]
)
async def test_a_body_not_sent_as_json_is_415_and_writes_nothing(
    client: httpx.AsyncClient, tenant_a: TenantHandle, path: str, body: Any, kind: str | None
) -> None:
    """A valid JSON body under another media type, or none: the client has a bug to fix, and
    "send it as application/json" says which, where a 422 said the body was not an object."""
    headers = {**tenant_a.headers, **({"content-type": kind} if kind else {})}
    request = client.build_request("POST", path, content=json.dumps(body), headers=headers)
    if kind is None:
        request.headers.pop("content-type", None)
    response = await client.send(request)
    assert (response.status_code, response.json()["title"]) == (415, "Unsupported Media Type")
    assert response.headers["content-type"] == "application/problem+json"
    assert (await client.get("/products", headers=tenant_a.headers)).json()["items"] == []
    assert (await client.get("/users", headers=tenant_a.headers)).json()["items"] == []


@pytest.mark.parametrize("kind", ["application/json; charset=utf-8", "application/merge+json"])
async def test_json_under_any_json_media_type_is_read(
    client: httpx.AsyncClient, tenant_a: TenantHandle, kind: str
) -> None:
    headers = {**tenant_a.headers, "content-type": kind}
    body = json.dumps({"email": "a@b.c", "name": "x"})
    assert (await client.post("/users", content=body, headers=headers)).status_code == 201


@pytest.mark.parametrize(("path", "body"), _VALID_BODIES, ids=[p for p, _ in _VALID_BODIES])
@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "GZIP"])
async def test_a_compressed_body_is_415_that_asks_for_it_uncompressed(
    client: httpx.AsyncClient, tenant_a: TenantHandle, path: str, body: Any, coding: str
) -> None:
    """The body is not read under a content coding: a gzipped order was a 422 about an
    "invalid start byte". The 415 says what to send instead (RFC 9110 15.5.16)."""
    headers = {**tenant_a.headers, "content-type": "application/json", "content-encoding": coding}
    response = await client.post(
        path, content=gzip.compress(json.dumps(body).encode()), headers=headers
    )
    assert (response.status_code, response.json()["title"]) == (415, "Unsupported Media Type")
    assert response.headers["accept-encoding"] == "identity"
    assert "uncompressed" in response.json()["detail"]
    assert (await client.get("/products", headers=tenant_a.headers)).json()["items"] == []
    assert (await client.get("/users", headers=tenant_a.headers)).json()["items"] == []


async def test_a_body_sent_as_identity_is_read(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    headers = {
        **tenant_a.headers,
        "content-type": "application/json",
        "content-encoding": "identity",
    }
    body = json.dumps({"email": "a@b.c", "name": "x"})
    assert (await client.post("/users", content=body, headers=headers)).status_code == 201


@pytest.mark.parametrize(
    ("path", "content"),
    [("/users", b'{"email": "a@b.c", "name": "\\ud800"}'),
     ("/products", b'{"name": "x\\udfff", "price_cents": 1, "stock": 1}'),
     ("/products/bulk", b'{"items": [{"name": "\\ud83d", "price_cents": 1, "stock": 1}]}')],
)  # fmt: skip
async def test_unpaired_surrogates_are_4xx(
    client: httpx.AsyncClient, tenant_a: TenantHandle, path: str, content: bytes
) -> None:
    """A JSON escape of half a UTF-16 pair is no character at all: refused, not a 500 when
    the text is encoded for the database."""
    headers = {**tenant_a.headers, "content-type": "application/json"}
    response = await client.post(path, content=content, headers=headers)
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert (await client.get("/products", headers=tenant_a.headers)).json()["items"] == []
    assert (await client.get("/users", headers=tenant_a.headers)).json()["items"] == []


async def test_oversize_bodies_are_413_whether_declared_or_streamed(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    big = b'{"items": [' + b'{"name": "x", "price_cents": 1, "stock": 1},' * 200_000 + b"]}"
    json_headers = {**tenant_a.headers, "content-type": "application/json"}
    declared = await client.post("/products/bulk", content=big, headers=json_headers)
    assert declared.status_code == 413
    assert declared.headers["content-type"] == "application/problem+json"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked upload
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    streamed = await client.post("/products/bulk", content=chunks(), headers=json_headers)
    assert streamed.status_code == 413
    assert (await client.get("/products", headers=tenant_a.headers)).json()["items"] == []


async def test_query_parameters_a_route_does_not_take_are_422_and_write_nothing(
    running: Running, tenant_a: TenantHandle
) -> None:
    """Every tenant route, found in the routers: a typo'd parameter would otherwise be ignored,
    and `?after=42` serve the first page again to a client paging with it."""
    client = running.client
    routes = [r for router in (orders, products, users) for r in router.routes
              if isinstance(r, TenantRoute)]  # fmt: skip
    assert len(routes) > 15
    for route in routes:
        path = re.sub(r"\{[^}]+\}", "1", route.path)
        for method in sorted(route.methods or ()):
            response = await client.request(method, path, params={"after": "42"},
                                            headers=tenant_a.headers, json={})  # fmt: skip
            assert response.status_code == 422, (method, path, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            if method == "HEAD":
                continue
            (error,) = response.json()["errors"]
            assert (error["loc"], error["type"]) == (["query", "after"], "extra_forbidden")
            assert error["msg"].startswith("Unknown query parameter: this path takes ")
    assert (await client.get("/products", headers=tenant_a.headers)).json()["items"] == []
    assert (await client.get("/users", headers=tenant_a.headers)).json()["items"] == []
    known = {"after_id": "0", "limit": "5", "status": "placed", "newest_first": "true"}
    listed = await client.get("/orders", params=known, headers=tenant_a.headers)
    assert listed.status_code == 200, listed.text
    paged = await client.get("/products", params={"after_id": "0", "limit": "5"},
                             headers=tenant_a.headers)  # fmt: skip
    assert paged.status_code == 200, paged.text


@pytest.mark.parametrize("path", ["/products", "/orders", "/users", "/users/1/orders"])
async def test_a_query_parameter_given_twice_is_422(
    client: httpx.AsyncClient, tenant_a: TenantHandle, path: str
) -> None:
    """``?limit=1&limit=100`` was read as 100 (the last): a gateway that checks the first
    value and the service would disagree about the request."""
    query = "limit=1&after_id=0&limit=100"
    response = await client.get(f"{path}?{query}", headers=tenant_a.headers)
    assert response.status_code == 422, response.text
    (error,) = response.json()["errors"]
    assert (error["loc"], error["type"]) == (["query", "limit"], "repeated")
