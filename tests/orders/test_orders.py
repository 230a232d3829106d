import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlalchemy import event

from tests.conftest import Running, TenantHandle


async def _user(client: httpx.AsyncClient, t: TenantHandle, email: str = "buyer@x.io") -> int:
    response = await client.post(
        "/users", json={"email": email, "name": "Buyer"}, headers=t.headers
    )
    user_id: int = response.json()["id"]
    return user_id


async def _product(client: httpx.AsyncClient, t: TenantHandle, stock: int, price: int = 100) -> int:
    body = {"name": "thing", "price_cents": price, "stock": stock}
    product_id: int = (await client.post("/products", json=body, headers=t.headers)).json()["id"]
    return product_id


async def _stock(client: httpx.AsyncClient, t: TenantHandle, product_id: int) -> int:
    stock: int = (await client.get(f"/products/{product_id}", headers=t.headers)).json()["stock"]
    return stock


def _order(user_id: int, *lines: tuple[int, int]) -> dict[str, Any]:
    return {"user_id": user_id, "items": [{"product_id": p, "quantity": q} for p, q in lines]}


async def test_order_takes_stock_and_reads_back(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    user = await _user(client, tenant_a)
    p1, p2 = await _product(client, tenant_a, 10, 250), await _product(client, tenant_a, 3, 1000)
    created = await client.post(
        "/orders", json=_order(user, (p1, 2), (p2, 3), (p1, 1)), headers=tenant_a.headers
    )
    assert created.status_code == 201, created.text
    order = created.json()
    assert order["total_cents"] == 3 * 250 + 3 * 1000
    assert {(i["product_id"], i["quantity"]) for i in order["items"]} == {(p1, 3), (p2, 3)}
    assert await _stock(client, tenant_a, p1) == 7
    assert await _stock(client, tenant_a, p2) == 0
    fetched = await client.get(f"/orders/{order['id']}", headers=tenant_a.headers)
    assert fetched.json() == order


async def test_insufficient_stock_is_409_and_changes_nothing(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    user = await _user(client, tenant_a)
    plenty, scarce = await _product(client, tenant_a, 10), await _product(client, tenant_a, 1)
    response = await client.post(
        "/orders", json=_order(user, (plenty, 4), (scarce, 2)), headers=tenant_a.headers
    )
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["short"] == [{"product_id": scarce, "requested": 2, "available": 1}]
    assert response.json()["detail"] == f"not enough stock for product {scarce}"
    assert await _stock(client, tenant_a, plenty) == 10  # the first line's decrement rolled back
    orders = await client.get(f"/users/{user}/orders", headers=tenant_a.headers)
    assert orders.json()["items"] == []


async def test_a_409_names_only_the_lines_short_of_stock(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    """The order statement has already taken the stock of the lines that had enough when it
    finds one short: a taken line may be left with less than its quantity (5 - 4 = 1 < 4),
    and must still not be named. Lines of one product add up."""
    user = await _user(client, tenant_a)
    taken, scarce, empty = [await _product(client, tenant_a, n) for n in (5, 3, 0)]
    order = _order(user, (taken, 4), (scarce, 2), (scarce, 2), (empty, 1))
    response = await client.post("/orders", json=order, headers=tenant_a.headers)
    assert response.status_code == 409
    assert response.json()["short"] == [
        {"product_id": scarce, "requested": 4, "available": 3},
        {"product_id": empty, "requested": 1, "available": 0},
    ]
    assert response.json()["detail"] == f"not enough stock for products {scarce}, {empty}"
    assert [await _stock(client, tenant_a, p) for p in (taken, scarce, empty)] == [5, 3, 0]


async def test_unknown_or_deleted_ids_are_404(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    user = await _user(client, tenant_a)
    product = await _product(client, tenant_a, 5)
    assert (
        await client.post(
            "/orders", json=_order(user + 999, (product, 1)), headers=tenant_a.headers
        )
    ).status_code == 404
    assert (
        await client.post(
            "/orders", json=_order(user, (product + 999, 1)), headers=tenant_a.headers
        )
    ).status_code == 404
    await client.delete(f"/products/{product}", headers=tenant_a.headers)
    assert (
        await client.post("/orders", json=_order(user, (product, 1)), headers=tenant_a.headers)
    ).status_code == 404
    assert (await client.get("/orders/999999", headers=tenant_a.headers)).status_code == 404


async def test_bad_order_bodies_are_422(client: httpx.AsyncClient, tenant_a: TenantHandle) -> None:
    bodies: list[Any] = [
        {"user_id": 1, "items": []},
        {"user_id": 1, "items": [{"product_id": 1, "quantity": 0}]},
        {"user_id": 1, "items": [{"product_id": 1, "quantity": -1}]},
        {"user_id": 1, "items": [{"product_id": 1, "quantity": 10**9}]},
        {"user_id": "1", "items": [{"product_id": 1, "quantity": 1}]},
        {"user_id": 1, "items": [{"product_id": 1, "quantity": 1}] * 10_000},
        {"user_id": 2**63, "items": [{"product_id": 1, "quantity": 1}]},
        [1, 2, 3],
    ]
    for body in bodies:
        response = await client.post("/orders", json=body, headers=tenant_a.headers)
        assert response.status_code == 422, str(body)[:80]


async def test_64_concurrent_orders_for_5_units_sell_exactly_5(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    user = await _user(client, tenant_a)
    product = await _product(client, tenant_a, 5)
    responses = await asyncio.gather(
        *(
            client.post("/orders", json=_order(user, (product, 1)), headers=tenant_a.headers)
            for _ in range(64)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 5
    assert statuses.count(409) == 59
    assert await _stock(client, tenant_a, product) == 0


@asynccontextmanager
async def count_queries(running: Running) -> AsyncIterator[list[str]]:
    """Statements the app sends meanwhile; the registry's background poll is paused so that
    only the request's own statements count."""
    statements: list[str] = []
    engine = running.state["db"].engine.sync_engine
    registry = running.state["registry"]

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    await registry.stop()
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)
        await registry.start()


async def test_user_orders_load_items_in_fixed_number_of_queries(
    client: httpx.AsyncClient, tenant_a: TenantHandle, running: Running
) -> None:
    user = await _user(client, tenant_a)
    products = [await _product(client, tenant_a, 100) for _ in range(3)]
    await client.post("/orders", json=_order(user, (products[0], 1)), headers=tenant_a.headers)
    async with count_queries(running) as one_order:
        response = await client.get(f"/users/{user}/orders", headers=tenant_a.headers)
    assert len(response.json()["items"]) == 1
    for _ in range(9):
        await client.post(
            "/orders", json=_order(user, *((p, 1) for p in products)), headers=tenant_a.headers
        )
    async with count_queries(running) as ten_orders:
        response = await client.get(f"/users/{user}/orders", headers=tenant_a.headers)
    body = response.json()
    assert len(body["items"]) == 10
    assert sum(len(o["items"]) for o in body["items"]) == 1 + 9 * 3
    assert len(ten_orders) == len(one_order)
    # set_config, the user check, the orders, one IN query for all their items.
    assert len(ten_orders) == 4, ten_orders


async def test_bad_order_bodies_say_where(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    bad_quantity = {"user_id": 1, "items": [{"product_id": 1, "quantity": 0}]}
    response = await client.post("/orders", json=bad_quantity, headers=tenant_a.headers)
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["errors"]] == [["body", "items", 0, "quantity"]]
    malformed = await client.post(
        "/orders", content=b'{"user_id": 1,', headers={**tenant_a.headers,
                                                        "content-type": "application/json"}
    )  # fmt: skip
    assert malformed.status_code == 422
    assert malformed.headers["content-type"] == "application/problem+json"
