"""Cancelling an order: its stock goes back in the same transaction, exactly once."""

import asyncio

import httpx
from prometheus_client import REGISTRY

from tenantsvc.products.schemas import MAX_STOCK
from tests.conftest import TenantHandle
from tests.orders.test_orders import _order, _product, _stock, _user


def _replays() -> float:
    found = REGISTRY.get_sample_value("tenantsvc_replays_total", {"reason": "deadlock_or_conflict"})
    return found or 0.0


async def _placed(client: httpx.AsyncClient, t: TenantHandle, *lines: tuple[int, int]) -> int:
    """An order by the tenant's buyer (created with its first order)."""
    users = (await client.get("/users", headers=t.headers)).json()["items"]
    user = users[0]["id"] if users else await _user(client, t)
    response = await client.post("/orders", json=_order(user, *lines), headers=t.headers)
    assert response.status_code == 201, response.text
    order_id: int = response.json()["id"]
    return order_id


async def test_cancel_puts_the_stock_back_and_keeps_the_order(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    p1, p2 = await _product(client, tenant_a, 10), await _product(client, tenant_a, 5)
    order = await _placed(client, tenant_a, (p1, 3), (p2, 5))
    assert (await _stock(client, tenant_a, p1), await _stock(client, tenant_a, p2)) == (7, 0)
    cancelled = await client.post(f"/orders/{order}/cancel", headers=tenant_a.headers)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["cancelled_at"] is not None
    assert len(cancelled.json()["items"]) == 2
    assert (await _stock(client, tenant_a, p1), await _stock(client, tenant_a, p2)) == (10, 5)
    fetched = await client.get(f"/orders/{order}", headers=tenant_a.headers)
    assert fetched.json() == cancelled.json()
    again = await client.post(f"/orders/{order}/cancel", headers=tenant_a.headers)
    assert (again.status_code, again.json()["title"]) == (409, "Already cancelled")
    assert await _stock(client, tenant_a, p1) == 10
    missing = await client.post(f"/orders/{order + 999}/cancel", headers=tenant_a.headers)
    assert missing.status_code == 404


async def test_a_soft_deleted_product_gets_its_stock_back_too(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    product = await _product(client, tenant_a, 4)
    order = await _placed(client, tenant_a, (product, 4))
    assert (await client.delete(f"/products/{product}", headers=tenant_a.headers)).is_success
    assert (await client.post(f"/orders/{order}/cancel", headers=tenant_a.headers)).is_success
    restored = await client.post(f"/products/{product}/restore", headers=tenant_a.headers)
    assert restored.json()["stock"] == 4


async def test_a_cancel_that_would_overflow_the_stock_changes_nothing(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    """A PATCH may set the stock to the column's top after the order took its units: the
    cancel names the product in a 409 rather than failing on the integer overflow, and the
    order stays placed."""
    roomy, full = await _product(client, tenant_a, 10), await _product(client, tenant_a, 10)
    order = await _placed(client, tenant_a, (roomy, 2), (full, 3))
    top = {"stock": MAX_STOCK - 1}
    assert (await client.patch(f"/products/{full}", json=top, headers=tenant_a.headers)).is_success
    refused = await client.post(f"/orders/{order}/cancel", headers=tenant_a.headers)
    assert refused.status_code == 409, refused.text
    assert (refused.json()["title"], refused.json()["product_ids"]) == ("Stock full", [full])
    assert f"product {full} above {MAX_STOCK}" in refused.json()["detail"]
    fetched = await client.get(f"/orders/{order}", headers=tenant_a.headers)
    assert fetched.json()["cancelled_at"] is None
    assert (await _stock(client, tenant_a, roomy), await _stock(client, tenant_a, full)) == (
        8,
        MAX_STOCK - 1,
    )
    lowered = {"stock": MAX_STOCK - 3}
    await client.patch(f"/products/{full}", json=lowered, headers=tenant_a.headers)
    assert (await client.post(f"/orders/{order}/cancel", headers=tenant_a.headers)).is_success
    assert await _stock(client, tenant_a, full) == MAX_STOCK


async def test_concurrent_cancels_give_the_stock_back_once(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    product = await _product(client, tenant_a, 10)
    order = await _placed(client, tenant_a, (product, 6))
    responses = await asyncio.gather(*(
        client.post(f"/orders/{order}/cancel", headers=tenant_a.headers) for _ in range(16)
    ))  # fmt: skip
    assert sorted(r.status_code for r in responses) == [200] + [409] * 15
    assert await _stock(client, tenant_a, product) == 10


async def test_cancels_and_new_orders_on_the_same_products_never_deadlock(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    """Cancels lock products in id order, as placing does: mixed, they queue and the books
    balance (stock + units in orders still placed = what was stocked)."""
    p1, p2, p3 = [await _product(client, tenant_a, 1000) for _ in range(3)]
    lines = [((p3, 1), (p1, 1)), ((p1, 2), (p2, 1)), ((p2, 1), (p3, 2))]
    placed = [await _placed(client, tenant_a, *lines[i % 3]) for i in range(24)]
    user = (await client.get("/users", headers=tenant_a.headers)).json()["items"][0]["id"]
    deadlocks = _replays()
    calls = [client.post(f"/orders/{o}/cancel", headers=tenant_a.headers) for o in placed]
    calls += [client.post("/orders", json=_order(user, *lines[i % 3]), headers=tenant_a.headers)
              for i in range(24)]  # fmt: skip
    responses = await asyncio.gather(*calls)
    assert [r.status_code for r in responses] == [200] * 24 + [201] * 24
    assert _replays() == deadlocks  # none served again after a deadlock (it would hide one)
    stock = sum([await _stock(client, tenant_a, p) for p in (p1, p2, p3)])
    assert stock + 24 // 3 * 8 == 3000  # the 24 new orders hold 8 units per three


async def test_a_cancel_reaches_only_its_own_tenant(
    client: httpx.AsyncClient, tenant_a: TenantHandle, tenant_b: TenantHandle
) -> None:
    """Both tenants have an order 1 on a product 1: cancelling A's leaves B's stock alone."""
    stocks = {}
    for t in (tenant_a, tenant_b):
        product = await _product(client, t, 5)
        order = await _placed(client, t, (product, 5))
        stocks[t.slug] = (order, product)
    assert stocks[tenant_a.slug] == stocks[tenant_b.slug]  # the same ids in each schema
    order, product = stocks[tenant_a.slug]
    assert (await client.post(f"/orders/{order}/cancel", headers=tenant_a.headers)).is_success
    assert await _stock(client, tenant_a, product) == 5
    assert await _stock(client, tenant_b, product) == 0
    b_order = await client.get(f"/orders/{order}", headers=tenant_b.headers)
    assert b_order.json()["cancelled_at"] is None


async def test_a_retried_cancel_with_a_key_is_its_first_answer(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    product = await _product(client, tenant_a, 3)
    order = await _placed(client, tenant_a, (product, 1))
    headers = {**tenant_a.headers, "Idempotency-Key": "cancel-it"}
    first = await client.post(f"/orders/{order}/cancel", headers=headers)
    again = await client.post(f"/orders/{order}/cancel", headers=headers)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"


async def test_orders_are_listed_by_page_and_by_state(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    product = await _product(client, tenant_a, 100)
    placed = [await _placed(client, tenant_a, (product, 1)) for _ in range(5)]
    for order in placed[1::2]:
        assert (await client.post(f"/orders/{order}/cancel", headers=tenant_a.headers)).is_success

    async def listed(**params: str | int) -> tuple[list[int], int | None]:
        page = await client.get("/orders", params=params, headers=tenant_a.headers)
        assert page.status_code == 200, page.text
        return [o["id"] for o in page.json()["items"]], page.json()["next_after_id"]

    assert await listed(limit=3) == (placed[:3], placed[2])
    assert await listed(after_id=placed[2]) == (placed[3:], None)
    assert await listed(status="cancelled") == (placed[1::2], None)
    assert await listed(status="placed", limit=2) == (placed[0::2][:2], placed[2])
    bad = await client.get("/orders", params={"status": "shipped"}, headers=tenant_a.headers)
    assert bad.status_code == 422


async def test_orders_newest_first_page_back_through_older_ones(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    """The latest orders at once (a dashboard's "recent orders"), without paging through all
    the older ones first; the next pages go back in time, and the filters still apply."""
    product = await _product(client, tenant_a, 100)
    placed = [await _placed(client, tenant_a, (product, 1)) for _ in range(5)]
    buyer = (await client.get(f"/orders/{placed[0]}", headers=tenant_a.headers)).json()["user_id"]
    newest = placed[::-1]
    await client.post(f"/orders/{placed[3]}/cancel", headers=tenant_a.headers)

    async def listed(path: str, **params: str | int) -> tuple[list[int], int | None]:
        page = await client.get(path, params={**params, "newest_first": "true"},
                                headers=tenant_a.headers)  # fmt: skip
        assert page.status_code == 200, page.text
        return [o["id"] for o in page.json()["items"]], page.json()["next_after_id"]

    for path in ("/orders", f"/users/{buyer}/orders"):
        assert await listed(path, limit=2) == (newest[:2], newest[1])
        assert await listed(path, limit=2, after_id=newest[1]) == (newest[2:4], newest[3])
        assert await listed(path, after_id=newest[3]) == (newest[4:], None)
    assert await listed("/orders", status="cancelled") == ([placed[3]], None)
    assert await listed("/orders", status="placed", limit=1, after_id=placed[3]) == (
        [placed[2]], placed[2])  # fmt: skip
