import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from tenantsvc.db.session import tenant_session
from tenantsvc.tenancy import fleet
from tenantsvc.tenancy.migrator import head
from tenantsvc.tenancy.provisioning import create_tenant
from tenantsvc.users.repository import UserRepository
from tests.conftest import TenantHandle
from tests.tenancy.fleet_tenants import enter, revisions_of


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


async def _user(client: httpx.AsyncClient, t: TenantHandle, email: str, **headers: str) -> int:
    body = {"email": email, "name": "Grace Hopper"}
    created = await client.post("/users", json=body, headers={**t.headers, **headers})
    assert created.status_code == 201, created.text
    user_id: int = created.json()["id"]
    return user_id


async def test_patch_changes_name_and_email(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    user = await _user(client, tenant_a, "grace@navy.mil")
    other = await _user(client, tenant_a, "other@navy.mil")
    patched = await client.patch(
        f"/users/{user}", json={"name": "RADM Hopper"}, headers=tenant_a.headers
    )
    assert patched.json()["name"] == "RADM Hopper"
    assert patched.json()["email"] == "grace@navy.mil"
    moved = {"email": "hopper@navy.mil"}
    assert (await client.patch(f"/users/{user}", json=moved, headers=tenant_a.headers)).json()[
        "email"
    ] == moved["email"]
    same = await client.patch(f"/users/{user}", json=moved, headers=tenant_a.headers)
    assert same.status_code == 200  # its own email is no conflict
    taken = await client.patch(f"/users/{other}", json=moved, headers=tenant_a.headers)
    assert taken.status_code == 409
    for bad in ({}, {"email": "nope"}, {"name": ""}, {"id": 5}):
        response = await client.patch(f"/users/{user}", json=bad, headers=tenant_a.headers)
        assert response.status_code == 422, bad
    missing = await client.patch(f"/users/{user + 999}", json=moved, headers=tenant_a.headers)
    assert missing.status_code == 404


async def test_an_erased_user_is_gone_but_its_orders_stay(
    client: httpx.AsyncClient, tenant_a: TenantHandle, engine: AsyncEngine
) -> None:
    headers = tenant_a.headers
    user = await _user(client, tenant_a, "erase.me@example.com")
    product = {"name": "Widget", "price_cents": 100, "stock": 5}
    product_id = (await client.post("/products", json=product, headers=headers)).json()["id"]
    order = {"user_id": user, "items": [{"product_id": product_id, "quantity": 2}]}
    order_id = (await client.post("/orders", json=order, headers=headers)).json()["id"]

    assert (await client.delete(f"/users/{user}", headers=headers)).status_code == 204
    for path in (f"/users/{user}", f"/users/{user}/orders"):
        assert (await client.get(path, headers=headers)).status_code == 404, path
    listed = (await client.get("/users", params={"limit": 100}, headers=headers)).json()
    assert user not in [u["id"] for u in listed["items"]]
    kept = await client.get(f"/orders/{order_id}", headers=headers)
    assert kept.json()["user_id"] == user  # the books keep the order, under the id
    refused = await client.post("/orders", json=order, headers=headers)
    assert refused.status_code == 404  # an erased user orders nothing, and takes no stock
    assert (await client.get(f"/products/{product_id}", headers=headers)).json()["stock"] == 3
    assert (await client.delete(f"/users/{user}", headers=headers)).status_code == 404
    assert (
        await client.patch(f"/users/{user}", json={"name": "x"}, headers=headers)
    ).status_code == 404
    async with engine.connect() as conn:
        await conn.execute(
            text("SELECT set_config('search_path', :s, true)"), {"s": tenant_a.schema}
        )
        row = (
            await conn.execute(text("SELECT email, name FROM users WHERE id = :id"), {"id": user})
        ).one()
    assert tuple(row) == (None, None)  # gone from the row itself, not only hidden
    # The address is free again.
    assert await _user(client, tenant_a, "erase.me@example.com") != user


async def test_erasure_reaches_the_answer_kept_for_a_retry(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    """A retried POST /users would replay the kept answer, email and name in it: erasure
    deletes that answer, so the retry creates a user afresh instead."""
    key = {"Idempotency-Key": "create-ada-1"}
    user = await _user(client, tenant_a, "ada@erase.io", **key)
    assert await _user(client, tenant_a, "ada@erase.io", **key) == user  # replayed
    assert (await client.delete(f"/users/{user}", headers=tenant_a.headers)).status_code == 204
    retried = await client.post(
        "/users", json={"email": "ada@erase.io", "name": "Grace Hopper"},
        headers={**tenant_a.headers, **key},
    )  # fmt: skip
    assert retried.status_code == 201
    assert "idempotent-replayed" not in retried.headers
    assert retried.json()["id"] != user


async def test_erasure_passes_over_kept_answers_that_are_not_json_objects(
    client: httpx.AsyncClient, tenant_a: TenantHandle, engine: AsyncEngine
) -> None:
    """An empty body, a claim still in flight: erasure must not fail on them (a 500 would
    leave the user's data in place)."""
    async with engine.begin() as conn:
        await enter(conn, tenant_a.schema)
        await conn.execute(text(
            "INSERT INTO idempotency_keys (key, request_hash, status, response) VALUES "
            "('empty', '\\x00', 204, ''), ('in-flight', '\\x00', NULL, NULL)"
        ))  # fmt: skip
    user = await _user(client, tenant_a, "plain@erase.io")
    assert (await client.delete(f"/users/{user}", headers=tenant_a.headers)).status_code == 204


async def test_erasure_stays_in_its_tenant(
    client: httpx.AsyncClient, tenant_a: TenantHandle, tenant_b: TenantHandle
) -> None:
    mine = await _user(client, tenant_a, "same@two.io")
    theirs = await _user(client, tenant_b, "same@two.io")
    assert mine == theirs  # each tenant numbers its own users: the ids collide on purpose
    assert (await client.delete(f"/users/{mine}", headers=tenant_a.headers)).status_code == 204
    kept = await client.get(f"/users/{theirs}", headers=tenant_b.headers)
    assert kept.json()["email"] == "same@two.io"


async def test_t0004_cannot_be_undone_while_erased_users_exist(fresh_engine: AsyncEngine) -> None:
    """Their email and name are gone: the NOT NULL columns could not take them back."""
    schema = (await create_tenant(fresh_engine, "erasing")).schema
    async with fresh_engine.begin() as conn:
        await conn.execute(text(f"SET LOCAL search_path = {schema}"))
        await conn.execute(text("INSERT INTO users (email, name) VALUES ('a@b.io', 'A')"))
        await conn.execute(text(
            "UPDATE users SET email = NULL, name = NULL, erased_at = now()"
        ))  # fmt: skip
    refused = await fleet.migrate_all(fresh_engine, "t0003")
    [failure] = refused.failures
    assert "erased users exist: t0004 cannot be undone" in (failure.error or "")
    assert await revisions_of(fresh_engine, [schema]) == {schema: head("tenant")}


async def test_a_user_locked_for_a_write_does_not_hold_up_an_order_for_it(
    client: httpx.AsyncClient, tenant_a: TenantHandle, engine: AsyncEngine
) -> None:
    """A PATCH or an erasure reads the user locked; the order placed for that user meanwhile
    checks its foreign key (FOR KEY SHARE), which only FOR UPDATE would block."""
    user_id = await _user(client, tenant_a, "lock@x.io")
    async with tenant_session(async_sessionmaker(engine), tenant_a.schema, tenant_a.role) as s:
        assert await UserRepository(s).get(user_id, for_update=True) is not None
        async with engine.begin() as other:
            await other.execute(text("SET LOCAL lock_timeout = '2s'"))
            await other.execute(
                text(f"INSERT INTO {tenant_a.schema}.orders (user_id) VALUES (:u)"), {"u": user_id}
            )


async def test_an_email_is_one_user_whatever_its_case(
    client: httpx.AsyncClient, tenant_a: TenantHandle, tenant_b: TenantHandle
) -> None:
    ann = await _user(client, tenant_a, "ann@case.io")
    twin = await client.post("/users", json={"email": "Ann@CASE.io", "name": "A"},
                             headers=tenant_a.headers)  # fmt: skip
    assert (twin.status_code, twin.json()["detail"]) == (409, "a user with this email exists")
    bob = await _user(client, tenant_a, "bob@case.io")
    taken = await client.patch(f"/users/{bob}", json={"email": "ANN@case.io"},
                               headers=tenant_a.headers)  # fmt: skip
    assert taken.status_code == 409
    own = await client.patch(f"/users/{ann}", json={"email": "Ann@Case.io"},
                             headers=tenant_a.headers)  # fmt: skip
    assert (own.status_code, own.json()["email"]) == (200, "Ann@Case.io")  # kept as written
    await _user(client, tenant_b, "ANN@case.io")  # another tenant's users are its own


async def test_t0005_names_the_users_who_share_an_email_and_waits_for_them(
    fresh_engine: AsyncEngine,
) -> None:
    """Registered before t0005, two users may differ only in case: the tenant stays at t0004,
    told which users, until all but one are changed; the rest of the fleet migrates."""
    twins, clean = [(await create_tenant(fresh_engine, s)).schema for s in ("twins", "clean")]
    await fleet.migrate_all(fresh_engine, "t0004")
    async with fresh_engine.begin() as conn:
        await conn.execute(text(f"INSERT INTO {twins}.users (email, name) VALUES "
                                "('ann@x.io', 'A'), ('bob@x.io', 'B'), ('Ann@X.io', 'A2'), "
                                "('ANN@x.io', 'A3'), ('Bob@x.io', 'B2')"))  # fmt: skip
    refused = await fleet.migrate_all(fresh_engine)
    [failure] = refused.failures
    assert (failure.slug, refused.migrated) == ("twins", 1)
    assert "users 1, 3, 4; 2, 5 share an email in different case" in (failure.error or "")
    assert await revisions_of(fresh_engine, [twins, clean]) == {twins: "t0004",
                                                                clean: head("tenant")}  # fmt: skip
    async with fresh_engine.begin() as conn:
        await conn.execute(text(f"UPDATE {twins}.users SET email = 'ann2@x.io' WHERE id = 3"))
        await conn.execute(text(f"DELETE FROM {twins}.users WHERE id IN (4, 5)"))
    assert (await fleet.migrate_all(fresh_engine)).failures == []
    assert await revisions_of(fresh_engine, [twins]) == {twins: head("tenant")}
