import httpx

from tests.conftest import TenantHandle


async def test_create_get_and_conflict(client: httpx.AsyncClient, tenant_a: TenantHandle) -> None:
    body = {"email": "ada@example.com", "name": "Ada"}
    created = await client.post("/users", json=body, headers=tenant_a.headers)
    assert created.status_code == 201
    user_id = created.json()["id"]
    fetched = await client.get(f"/users/{user_id}", headers=tenant_a.headers)
    assert fetched.json()["email"] == "ada@example.com"
    again = await client.post("/users", json=body, headers=tenant_a.headers)
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"


async def test_same_email_in_two_tenants_is_fine(
    client: httpx.AsyncClient, tenant_a: TenantHandle, tenant_b: TenantHandle
) -> None:
    body = {"email": "same@example.com", "name": "Same"}
    assert (await client.post("/users", json=body, headers=tenant_a.headers)).status_code == 201
    assert (await client.post("/users", json=body, headers=tenant_b.headers)).status_code == 201


async def test_bad_bodies_are_422(client: httpx.AsyncClient, tenant_a: TenantHandle) -> None:
    for body in ({"email": "nope", "name": "x"}, {"email": "a@b.c"}, {"email": 5, "name": "x"}):
        response = await client.post("/users", json=body, headers=tenant_a.headers)
        assert response.status_code == 422, body
    bad_json = await client.post(
        "/users",
        content=b"{not json",
        headers={**tenant_a.headers, "content-type": "application/json"},
    )
    assert bad_json.status_code == 422


async def test_users_keyset(client: httpx.AsyncClient, tenant_a: TenantHandle) -> None:
    for i in range(5):
        await client.post(
            "/users", json={"email": f"u{i}@x.io", "name": f"u{i}"}, headers=tenant_a.headers
        )
    first = (await client.get("/users", params={"limit": 3}, headers=tenant_a.headers)).json()
    assert len(first["items"]) == 3
    rest = await client.get(
        "/users", params={"after_id": first["next_after_id"], "limit": 3}, headers=tenant_a.headers
    )
    assert len(rest.json()["items"]) == 2
    assert rest.json()["next_after_id"] is None
