"""POST /orders with an Idempotency-Key: a retry gets the first answer, never a second order."""

import asyncio
from typing import Any

import httpx
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import TenantHandle
from tests.orders.test_orders import _order, _product, _stock, _user
from tests.tenancy.fleet_tenants import enter


def _keyed(t: TenantHandle, key: str) -> dict[str, str]:
    return {**t.headers, "Idempotency-Key": key}


async def _orders_of(client: httpx.AsyncClient, t: TenantHandle, user: int) -> list[int]:
    page = (await client.get(f"/users/{user}/orders", headers=t.headers)).json()
    return [o["id"] for o in page["items"]]


async def test_a_retried_order_is_answered_again_not_placed_again(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    user, product = await _user(client, tenant_a), await _product(client, tenant_a, 10)
    body = _order(user, (product, 2))
    first = await client.post("/orders", json=body, headers=_keyed(tenant_a, "order-7f3a"))
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    # The same request with its JSON spelt differently is the same request.
    again = await client.post(
        "/orders", content=f'{{ "items": {body["items"]},  "user_id": {user} }}'.replace("'", '"'),
        headers={**_keyed(tenant_a, "order-7f3a"), "Content-Type": "application/json"},
    )  # fmt: skip
    assert (again.status_code, again.json()) == (201, first.json())
    assert again.headers["Idempotent-Replayed"] == "true"
    # The whitespace around a header's value is not part of it (RFC 9110): the same key.
    spaced = await client.post("/orders", json=body, headers=_keyed(tenant_a, " order-7f3a\t"))
    assert (spaced.status_code, spaced.headers.get("Idempotent-Replayed")) == (201, "true")
    assert await _stock(client, tenant_a, product) == 8
    assert await _orders_of(client, tenant_a, user) == [first.json()["id"]]
    other = await client.post("/orders", json=body, headers=_keyed(tenant_a, "order-other"))
    assert other.status_code == 201
    assert other.json()["id"] != first.json()["id"]
    plain = await client.post("/orders", json=body, headers=tenant_a.headers)
    assert plain.status_code == 201  # no key: every request is a new order
    assert await _stock(client, tenant_a, product) == 4


async def test_concurrent_retries_place_one_order(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    user, product = await _user(client, tenant_a), await _product(client, tenant_a, 100)
    responses = await asyncio.gather(*(
        client.post("/orders", json=_order(user, (product, 1)), headers=_keyed(tenant_a, "k-1"))
        for _ in range(16)
    ))  # fmt: skip
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 15
    assert await _stock(client, tenant_a, product) == 99


def _counted() -> dict[str, float]:
    """tenantsvc_idempotency_keys_total by outcome, in this process."""
    sample = "tenantsvc_idempotency_keys_total"
    return {o: REGISTRY.get_sample_value(sample, {"outcome": o}) or 0.0
            for o in ("stored", "replayed", "reused")}  # fmt: skip


async def test_a_key_reused_for_another_request_is_422_and_changes_nothing(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    user, product = await _user(client, tenant_a), await _product(client, tenant_a, 10)
    headers, body = _keyed(tenant_a, "reused"), _order(user, (product, 1))
    before = _counted()
    assert (await client.post("/orders", json=body, headers=headers)).is_success
    assert (await client.post("/orders", json=body, headers=headers)).is_success
    reused = await client.post("/orders", json=_order(user, (product, 3)), headers=headers)
    after = _counted()
    assert {o: after[o] - before[o] for o in after} == {"stored": 1, "replayed": 1, "reused": 1}
    assert reused.status_code == 422
    assert reused.headers["content-type"] == "application/problem+json"
    assert "Idempotency-Key" in reused.json()["title"]
    assert await _stock(client, tenant_a, product) == 9


async def test_a_refused_order_is_not_remembered(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    """A 409 rolled back its claim with its stock: once restocked, the retry places it."""
    user, product = await _user(client, tenant_a), await _product(client, tenant_a, 1)
    headers, body = _keyed(tenant_a, "after-restock"), _order(user, (product, 2))
    assert (await client.post("/orders", json=body, headers=headers)).status_code == 409
    patched = await client.patch(
        f"/products/{product}", json={"stock": 5}, headers=tenant_a.headers
    )
    assert patched.is_success, patched.text
    retried = await client.post("/orders", json=body, headers=headers)
    assert (retried.status_code, retried.headers.get("Idempotent-Replayed")) == (201, None)
    assert await _stock(client, tenant_a, product) == 3


async def test_keys_are_each_tenants_own(
    client: httpx.AsyncClient, tenant_a: TenantHandle, tenant_b: TenantHandle
) -> None:
    """The same key from two tenants is two orders, and never one tenant's answer to the other."""
    answers: list[dict[str, Any]] = []
    for t in (tenant_a, tenant_b):
        user, product = (
            await _user(client, t),
            await _product(client, t, 5, price=100 + len(answers)),
        )
        response = await client.post(
            "/orders", json=_order(user, (product, 1)), headers=_keyed(t, "same")
        )
        assert (response.status_code, response.headers.get("Idempotent-Replayed")) == (201, None)
        answers.append(response.json())
    assert [a["total_cents"] for a in answers] == [100, 101]


async def test_an_expired_key_starts_afresh_and_old_ones_are_pruned(
    client: httpx.AsyncClient, tenant_a: TenantHandle, engine: AsyncEngine
) -> None:
    user, product = await _user(client, tenant_a), await _product(client, tenant_a, 10)
    for key in ("old-1", "old-2", "kept"):
        response = await client.post(
            "/orders", json=_order(user, (product, 1)), headers=_keyed(tenant_a, key)
        )
        assert response.status_code == 201
    async with engine.begin() as conn:
        await enter(conn, tenant_a.schema)
        aged = "UPDATE idempotency_keys SET created_at = created_at - interval '25 hours'"
        aged += " WHERE key LIKE 'old-%'"
        await conn.execute(text(aged))
    again = await client.post(
        "/orders", json=_order(user, (product, 4)), headers=_keyed(tenant_a, "old-1")
    )
    assert (again.status_code, again.headers.get("Idempotent-Replayed")) == (201, None)
    async with engine.begin() as conn:
        await enter(conn, tenant_a.schema)
        left = await conn.execute(text("SELECT key FROM idempotency_keys ORDER BY key"))
        assert [k for (k,) in left] == ["kept", "old-1"]  # old-2 pruned by old-1's claim
    assert await _stock(client, tenant_a, product) == 3


async def test_bad_keys_are_400_before_any_write(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    user, product = await _user(client, tenant_a), await _product(client, tenant_a, 10)
    body = _order(user, (product, 1))
    raw = [(k.encode(), v.encode()) for k, v in tenant_a.headers.items()]
    for bad in (b"", b"x" * 256, b"has space", "ключ".encode()):
        response = await client.post(
            "/orders", json=body, headers=[*raw, (b"Idempotency-Key", bad)]
        )
        assert response.status_code == 400, bad
        assert response.headers["content-type"] == "application/problem+json"
    twice = [*raw, (b"Idempotency-Key", b"a1"), (b"Idempotency-Key", b"a2")]
    assert (await client.post("/orders", json=body, headers=twice)).status_code == 400
    assert await _stock(client, tenant_a, product) == 10


async def test_every_create_route_takes_a_key(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    """A retried create is answered again, and the rows are there once: a user (whose retry
    would otherwise be a 409 for its own email), a product, a bulk import."""
    bulk = [{"name": f"b{i}", "price_cents": 1, "stock": 1} for i in range(3)]
    creates: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
        # path, body, another body, where the rows are listed
        ("/users", {"email": "once@x.io", "name": "Once"}, {"email": "twice@x.io", "name": "T"},
         "/users"),
        ("/products", {"name": "once", "price_cents": 1, "stock": 1},
         {"name": "other", "price_cents": 1, "stock": 1}, "/products"),
        ("/products/bulk", {"items": bulk}, {"items": bulk[:2]}, "/products"),
    ]  # fmt: skip
    for path, body, other, listing in creates:
        before = len((await client.get(listing, headers=tenant_a.headers)).json()["items"])
        headers = _keyed(tenant_a, f"create{path}")
        first = await client.post(path, json=body, headers=headers)
        again = await client.post(path, json=body, headers=headers)
        assert (first.status_code, again.status_code) == (201, 201), (path, again.text)
        assert again.json() == first.json(), path
        assert again.headers["Idempotent-Replayed"] == "true", path
        after = len((await client.get(listing, headers=tenant_a.headers)).json()["items"])
        assert after - before == len(body.get("items", [body])), path
        reused = await client.post(path, json=other, headers=headers)
        assert (reused.status_code, reused.json()["title"]) == (422, "Idempotency-Key reused")
        bad = await client.post(path, json=body, headers=_keyed(tenant_a, "no spaces allowed"))
        assert bad.status_code == 400, path


async def test_a_201_says_where_the_new_resource_is_and_its_replay_too(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    """Location on each create, the plain route's order included, and on the answer a retry
    gets back (the key keeps the body and status; the address is read from the body)."""
    user, product = await _user(client, tenant_a), await _product(client, tenant_a, 10)
    creates = [
        ("/orders", _order(user, (product, 1))),
        ("/products", {"name": "lamp", "price_cents": 1, "stock": 1}),
        ("/users", {"email": "where@x.io", "name": "W"}),
    ]
    for collection, body in creates:
        headers = _keyed(tenant_a, f"where-{collection[1:]}")
        first = await client.post(collection, json=body, headers=headers)
        again = await client.post(collection, json=body, headers=headers)
        assert first.status_code == again.status_code == 201, first.text
        expected = f"{collection}/{first.json()['id']}"
        assert (first.headers["location"], again.headers["location"]) == (expected, expected)
        assert again.headers["idempotent-replayed"] == "true"
        fetched = await client.get(expected, headers=tenant_a.headers)
        assert (fetched.status_code, fetched.json()["id"]) == (200, first.json()["id"])
    many = {"items": [{"name": "a", "price_cents": 1, "stock": 1}]}
    bulk = await client.post("/products/bulk", json=many, headers=tenant_a.headers)
    assert (bulk.status_code, "location" in bulk.headers) == (201, False)  # many: no one place
