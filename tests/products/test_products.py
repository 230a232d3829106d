import httpx

from tests.conftest import Running, TenantHandle


async def _create(
    client: httpx.AsyncClient, t: TenantHandle, **fields: object
) -> dict[str, object]:
    body = {"name": "widget", "price_cents": 100, "stock": 5, **fields}
    response = await client.post("/products", json=body, headers=t.headers)
    assert response.status_code == 201, response.text
    created: dict[str, object] = response.json()
    return created


async def test_create_get_patch(client: httpx.AsyncClient, tenant_a: TenantHandle) -> None:
    product = await _create(client, tenant_a, name="lamp")
    url = f"/products/{product['id']}"
    assert (await client.get(url, headers=tenant_a.headers)).json()["name"] == "lamp"
    patched = await client.patch(url, json={"price_cents": 250}, headers=tenant_a.headers)
    assert patched.json()["price_cents"] == 250
    assert patched.json()["name"] == "lamp"
    empty = await client.patch(url, json={}, headers=tenant_a.headers)
    assert empty.status_code == 422


async def test_soft_delete_hides_and_restore_returns(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    keep = await _create(client, tenant_a, name="keep")
    gone = await _create(client, tenant_a, name="gone")
    url = f"/products/{gone['id']}"
    assert (await client.delete(url, headers=tenant_a.headers)).status_code == 204
    assert (await client.get(url, headers=tenant_a.headers)).status_code == 404
    assert (await client.delete(url, headers=tenant_a.headers)).status_code == 404
    listed = (await client.get("/products", headers=tenant_a.headers)).json()["items"]
    assert [p["id"] for p in listed] == [keep["id"]]
    restored = await client.post(f"{url}/restore", headers=tenant_a.headers)
    assert restored.status_code == 200
    assert restored.json()["deleted_at"] is None
    assert (await client.post(f"{url}/restore", headers=tenant_a.headers)).status_code == 404
    listed = (await client.get("/products", headers=tenant_a.headers)).json()["items"]
    assert [p["id"] for p in listed] == [keep["id"], gone["id"]]


async def test_keyset_pages_cover_every_live_row_once(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    items = [{"name": f"p{i}", "price_cents": i, "stock": 1} for i in range(53)]
    bulk = await client.post("/products/bulk", json={"items": items}, headers=tenant_a.headers)
    ids = bulk.json()["ids"]
    for deleted in ids[::10]:
        await client.delete(f"/products/{deleted}", headers=tenant_a.headers)
    seen: list[int] = []
    after: int | None = 0
    while after is not None:
        page = await client.get(
            "/products", params={"after_id": after, "limit": 7}, headers=tenant_a.headers
        )
        body = page.json()
        assert len(body["items"]) <= 7
        seen += [p["id"] for p in body["items"]]
        after = body["next_after_id"]
    assert seen == [i for i in ids if i not in ids[::10]]


async def test_bulk_insert_thousands(client: httpx.AsyncClient, tenant_a: TenantHandle) -> None:
    items = [{"name": f"bulk {i}", "price_cents": i, "stock": 3} for i in range(5000)]
    response = await client.post("/products/bulk", json={"items": items}, headers=tenant_a.headers)
    assert response.status_code == 201
    body = response.json()
    assert body["count"] == 5000
    assert body["ids"] == sorted(body["ids"])
    last = await client.get(f"/products/{body['ids'][-1]}", headers=tenant_a.headers)
    assert last.json()["name"] == "bulk 4999"


ODD_NAMES = ["tab\there", "line\nbreak", "back\\slash", "quote ' and \"", "\\N", "emoji \U0001f600",
             "\u202eRTL", "%s %(x)s $1 :name", "--", "x" * 200]  # fmt: skip


async def test_any_text_but_nul_comes_back_as_sent(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    """Names go to the database as bound parameters, never spliced into SQL or COPY text:
    whatever a client sends (NUL aside, which PostgreSQL cannot store, and the whitespace
    around it, below) reads back unchanged, through single, bulk and patched writes."""
    headers = tenant_a.headers
    items = [{"name": n, "price_cents": 1, "stock": 1} for n in ODD_NAMES]
    bulk = await client.post("/products/bulk", json={"items": items}, headers=headers)
    single = await client.post("/products", json=items[0], headers=headers)
    ids = [*bulk.json()["ids"], single.json()["id"]]
    patched = await client.patch(
        f"/products/{ids[-1]}", json={"name": ODD_NAMES[1]}, headers=headers
    )
    assert patched.status_code == 200, patched.text
    names = [(await client.get(f"/products/{i}", headers=headers)).json()["name"] for i in ids]
    assert names == [*ODD_NAMES, ODD_NAMES[1]]


async def test_names_and_emails_lose_the_whitespace_around_them(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    """A name copied with a trailing space is that name; a name of spaces names nothing."""
    headers = tenant_a.headers
    product = await _create(client, tenant_a, name="  Beans 1kg \t")
    assert product["name"] == "Beans 1kg"
    bulk = {"items": [{"name": " Kettle ", "price_cents": 1, "stock": 1}]}
    (bulk_id,) = (await client.post("/products/bulk", json=bulk, headers=headers)).json()["ids"]
    assert (await client.get(f"/products/{bulk_id}", headers=headers)).json()["name"] == "Kettle"
    user = await client.post("/users", json={"email": " ann@x.io\n", "name": " Ann "},
                             headers=headers)  # fmt: skip
    assert (user.json()["email"], user.json()["name"]) == ("ann@x.io", "Ann")
    for path, body in (("/products", {"name": "   ", "price_cents": 1, "stock": 1}),
                       (f"/products/{bulk_id}", {"name": "\t"}),
                       (f"/users/{user.json()['id']}", {"name": "  "})):  # fmt: skip
        send = client.patch if path != "/products" else client.post
        refused = await send(path, json=body, headers=headers)
        assert refused.status_code == 422, (path, refused.text)
        assert refused.json()["errors"][0]["type"] == "string_too_short"


async def test_bulk_refuses_bad_rows_whole(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    items = [
        {"name": "ok", "price_cents": 1, "stock": 1},
        {"name": "bad", "price_cents": -1, "stock": 1},
    ]
    response = await client.post("/products/bulk", json={"items": items}, headers=tenant_a.headers)
    assert response.status_code == 422
    listed = (await client.get("/products", headers=tenant_a.headers)).json()
    assert listed["items"] == []


async def test_pagination_limits_are_validated(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    for params in ({"limit": 0}, {"limit": 101}, {"after_id": -1}, {"after_id": 2**63}):
        response = await client.get("/products", params=params, headers=tenant_a.headers)
        assert response.status_code == 422, params
        assert response.headers["content-type"] == "application/problem+json"


async def test_bad_query_parameters_say_where(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    for params, field in (({"limit": "abc"}, "limit"), ({"after_id": "1.5"}, "after_id")):
        response = await client.get("/products", params=params, headers=tenant_a.headers)
        assert response.status_code == 422
        assert [e["loc"] for e in response.json()["errors"]] == [["query", field]]


async def test_method_not_allowed_lists_every_method_of_the_path(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    """RFC 9110: a 405's Allow lists what the resource supports, across all its routes, and
    so does an OPTIONS, which asked for a tenant and then answered a 405."""
    for path, expected in (("/products", {"GET", "POST"}),
                           ("/products/1", {"GET", "PATCH", "DELETE"}),
                           ("/users", {"GET", "POST"})):  # fmt: skip
        response = await client.request("PUT", path, headers=tenant_a.headers)
        assert response.status_code == 405, path
        assert response.headers["content-type"] == "application/problem+json"
        assert set(response.headers["allow"].split(", ")) == expected | {"HEAD", "OPTIONS"}, path
        # OPTIONS tells the same to anyone: the routes are in /openapi.json for all to read.
        options = await client.options(path)
        assert (options.status_code, options.content) == (204, b""), options.text
        assert options.headers["allow"] == response.headers["allow"], path
    nowhere = await client.options("/nope")
    assert (nowhere.status_code, nowhere.json()["detail"]) == (404, "no such path: /nope")


async def test_a_trailing_slash_is_a_404_naming_the_path_not_a_redirect(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    """Starlette redirected /products/ to /products with a Location built from the Host header
    and the scheme uvicorn saw: behind a TLS proxy, http://, where a client that follows it
    sends its API key in clear."""
    for method, path in (("GET", "/products/"), ("POST", "/orders/"), ("GET", "/nope")):
        response = await client.request(
            method, path, headers={**tenant_a.headers, "Host": "api.example.com"}
        )
        assert response.status_code == 404, (path, response.headers)
        assert "location" not in response.headers
        assert response.json()["detail"] == f"no such path: {path}"


def _but_id_and_date(headers: httpx.Headers) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k not in ("x-request-id", "date")}


async def test_head_is_get_without_the_body(
    client: httpx.AsyncClient, tenant_a: TenantHandle, tenant_b: TenantHandle, running: Running
) -> None:
    """Every path that serves GET serves HEAD (the 405s' Allow says so), through the same
    tenant and key checks."""
    # Both keys in the snapshot: a poll between the two tenants' creation knows only tenant_a's
    # key, and an unknown key is a 401 (test_key_of_another_tenant_is_403).
    await running.state["registry"].refresh()
    await client.post("/products", json={"name": "x", "price_cents": 1, "stock": 1},
                      headers=tenant_a.headers)  # fmt: skip
    for path in ("/products", "/products/1", "/users", "/orders", "/healthz"):
        got = await client.get(path, headers=tenant_a.headers)
        head = await client.head(path, headers=tenant_a.headers)
        assert (head.status_code, head.content) == (got.status_code, b""), path
        assert head.headers["content-length"] == str(len(got.content)), path
        assert _but_id_and_date(head.headers) == _but_id_and_date(got.headers), path
    crossed = {**tenant_a.headers, "Authorization": f"Bearer {tenant_b.api_key}"}
    assert (await client.head("/products", headers=crossed)).status_code == 403
    assert (await client.head("/products")).status_code == 400
    refused = await client.head("/orders/1/cancel", headers=tenant_a.headers)
    assert (refused.status_code, refused.headers["allow"]) == (405, "OPTIONS, POST")
