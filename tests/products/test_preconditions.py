"""If-Match on single-row writes: the lost update it exists for (an order lands between a
client's read and its PATCH of the stock), and RFC 9110's rules for the header."""

import asyncio

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import TenantHandle
from tests.polling import until_sql


async def _product(client: httpx.AsyncClient, t: TenantHandle) -> tuple[str, str]:
    body = {"name": "lamp", "price_cents": 100, "stock": 10}
    created = await client.post("/products", json=body, headers=t.headers)
    url = f"/products/{created.json()['id']}"
    read = await client.get(url, headers=t.headers)
    return url, read.headers["etag"]


async def _user(client: httpx.AsyncClient, t: TenantHandle) -> tuple[str, str]:
    created = await client.post("/users", json={"email": "a@b.c", "name": "A"}, headers=t.headers)
    url = f"/users/{created.json()['id']}"
    read = await client.get(url, headers=t.headers)
    return url, read.headers["etag"]


async def test_a_stock_set_from_a_read_before_an_order_is_412_and_changes_nothing(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    url, etag = await _product(client, tenant_a)
    user = (await client.post("/users", json={"email": "b@b.c", "name": "B"},
                              headers=tenant_a.headers)).json()["id"]  # fmt: skip
    order = {"user_id": user, "items": [{"product_id": int(url.rsplit("/", 1)[1]), "quantity": 3}]}
    assert (await client.post("/orders", json=order, headers=tenant_a.headers)).status_code == 201
    # The client read stock 10 before the order, and means to add 5 to what it read.
    stale = {**tenant_a.headers, "If-Match": etag}
    refused = await client.patch(url, json={"stock": 15}, headers=stale)
    assert (refused.status_code, refused.json()["title"]) == (412, "Precondition failed")
    assert refused.headers["content-type"] == "application/problem+json"
    now = await client.get(url, headers=tenant_a.headers)
    assert now.json()["stock"] == 7  # the order's 3 units stay taken
    assert refused.headers["etag"] == now.headers["etag"] != etag
    fresh = {**tenant_a.headers, "If-Match": now.headers["etag"]}
    patched = await client.patch(url, json={"stock": 12}, headers=fresh)
    assert (patched.status_code, patched.json()["stock"]) == (200, 12)
    assert (
        patched.headers["etag"]
        == (await client.get(url, headers=tenant_a.headers)).headers["etag"]
        != now.headers["etag"]
    )  # the new version's, ready for the next write


@pytest.mark.parametrize(
    ("if_match", "status"),
    [("*", 200), ('"1", {etag}', 200), ("W/{etag}", 412), ('"1"', 412), ("", 412), (None, 200)],
)
async def test_if_match_compares_strongly_and_star_matches_any(
    client: httpx.AsyncClient, tenant_a: TenantHandle, if_match: str | None, status: int
) -> None:
    url, etag = await _product(client, tenant_a)
    headers = dict(tenant_a.headers)
    if if_match is not None:
        headers["If-Match"] = if_match.format(etag=etag)
    assert (await client.patch(url, json={"name": "x"}, headers=headers)).status_code == status


async def test_stale_deletes_and_erasures_are_412_and_delete_nothing(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    for url, etag in (await _product(client, tenant_a), await _user(client, tenant_a)):
        await client.patch(url, json={"name": "changed"}, headers=tenant_a.headers)
        stale = {**tenant_a.headers, "If-Match": etag}
        assert (await client.delete(url, headers=stale)).status_code == 412, url
        now = await client.get(url, headers=tenant_a.headers)
        assert (now.status_code, now.json()["name"]) == (200, "changed"), url
        current = {**tenant_a.headers, "If-Match": now.headers["etag"]}
        assert (await client.delete(url, headers=current)).status_code == 204, url
        assert (await client.get(url, headers=tenant_a.headers)).status_code == 404, url


async def test_a_users_stale_patch_is_412_and_head_carries_the_etag(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    url, etag = await _user(client, tenant_a)
    assert (await client.head(url, headers=tenant_a.headers)).headers["etag"] == etag
    await client.patch(url, json={"name": "B"}, headers=tenant_a.headers)
    stale = {**tenant_a.headers, "If-Match": etag}
    assert (await client.patch(url, json={"name": "C"}, headers=stale)).status_code == 412
    assert (await client.get(url, headers=tenant_a.headers)).json()["name"] == "B"


async def test_a_missing_row_is_404_whatever_if_match_says(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    headers = {**tenant_a.headers, "If-Match": "*"}
    assert (
        await client.patch("/products/999", json={"name": "x"}, headers=headers)
    ).status_code == 404
    assert (await client.delete("/users/999", headers=headers)).status_code == 404


async def test_a_copy_still_current_is_304_without_a_body_until_the_row_changes(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    for url, etag in (await _product(client, tenant_a), await _user(client, tenant_a)):
        for held in (etag, f"W/{etag}", f'"1", {etag}', "*"):  # weak comparison, as RFC 9110
            again = await client.get(url, headers={**tenant_a.headers, "If-None-Match": held})
            assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", etag)
        await client.patch(url, json={"name": "changed"}, headers=tenant_a.headers)
        changed = await client.get(url, headers={**tenant_a.headers, "If-None-Match": etag})
        assert (changed.status_code, changed.json()["name"]) == (200, "changed"), url
        assert changed.headers["etag"] != etag


@pytest.mark.parametrize(
    ("if_none_match", "status"),
    [("*", 412), ("{etag}", 412), ("W/{etag}", 412), ('"1", {etag}', 412), ('"1"', 200)],
)
async def test_if_none_match_on_a_write_is_412_when_it_names_the_row_and_writes_nothing(
    client: httpx.AsyncClient, tenant_a: TenantHandle, if_none_match: str, status: int
) -> None:
    """RFC 9110: "only if it changed" (or with *, "only if there is none"). Ignored, the PATCH
    and the DELETE went through."""
    for url, etag in (await _product(client, tenant_a), await _user(client, tenant_a)):
        headers = {**tenant_a.headers, "If-None-Match": if_none_match.format(etag=etag)}
        patched = await client.patch(url, json={"name": "changed"}, headers=headers)
        assert patched.status_code == status, url
        deleted = await client.delete(url, headers=headers)
        if status == 412:
            assert patched.headers["etag"] == deleted.headers["etag"] == etag
            assert deleted.status_code == 412
            now = await client.get(url, headers=tenant_a.headers)
            assert (now.status_code, now.headers["etag"]) == (200, etag), url  # untouched
        else:
            assert deleted.status_code == 204, url


async def test_a_write_that_waited_for_another_is_checked_against_what_that_one_wrote(
    client: httpx.AsyncClient, tenant_a: TenantHandle, engine: AsyncEngine
) -> None:
    """The row is locked before the comparison. An order holds the product's row (taking
    stock) when a PATCH with the ETag read before it arrives: the PATCH waits for the order's
    commit, then finds a newer version and is a 412. Compared before locking, it passed and
    its stock overwrote the order's."""
    url, etag = await _product(client, tenant_a)
    product_id = int(url.rsplit("/", 1)[1])
    async with engine.connect() as order:
        await order.execute(
            text(f"UPDATE {tenant_a.schema}.products SET stock = stock - 3 WHERE id = :id"),
            {"id": product_id},
        )
        patch = asyncio.create_task(
            client.patch(url, json={"stock": 15}, headers={**tenant_a.headers, "If-Match": etag})
        )
        waiting = ("SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                   "AND query LIKE '%FOR NO KEY UPDATE%'")  # fmt: skip
        await until_sql(engine, waiting, "the PATCH never waited for the order's row lock")
        await order.commit()
    assert (await patch).status_code == 412
    assert (await client.get(url, headers=tenant_a.headers)).json()["stock"] == 7


@pytest.mark.parametrize(
    ("collection", "body"),
    [("/products", {"name": "lamp", "price_cents": 1, "stock": 1}),
     ("/users", {"email": "tagged@x.io", "name": "T"})],
)  # fmt: skip
async def test_a_create_answers_with_the_etag_a_patch_can_send_at_once(
    client: httpx.AsyncClient, tenant_a: TenantHandle, collection: str, body: dict[str, object]
) -> None:
    """No read between creating a row and writing it under If-Match. A retry's replayed
    answer carries none: the row may have changed since, and an old tag would only 412."""
    headers = {**tenant_a.headers, "Idempotency-Key": f"tag{collection[1:]}"}
    created = await client.post(collection, json=body, headers=headers)
    read = await client.get(created.headers["location"], headers=tenant_a.headers)
    assert created.headers["etag"] == read.headers["etag"]
    matching = {**tenant_a.headers, "If-Match": created.headers["etag"]}
    patched = await client.patch(created.headers["location"], json={"name": "renamed"},
                                 headers=matching)  # fmt: skip
    assert patched.status_code == 200, patched.text
    replayed = await client.post(collection, json=body, headers=headers)
    assert (replayed.status_code, "etag" in replayed.headers) == (201, False)
