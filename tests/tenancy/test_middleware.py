"""Every error status of tenant resolution, each a problem+json body."""

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantsvc.tenancy import fleet
from tenantsvc.tenancy.admin import create_key, revoke_key, set_status
from tenantsvc.tenancy.lifecycle import archive
from tenantsvc.tenancy.models import TenantStatus
from tenantsvc.tenancy.roles import drop_role, isolate
from tenantsvc.testing.app import running_app
from tests.conftest import Running, TenantFactory, TenantHandle, make_settings
from tests.polling import until


def assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    assert body["status"] == status
    assert body["title"]
    return body


async def test_missing_tenant_header_is_400(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/products"), 400)


@pytest.mark.parametrize(
    "value", ["", " ", "ACME", "a;drop", "public", "x" * 41, "tenant_x,public"]
)
async def test_malformed_tenant_header_is_400(client: httpx.AsyncClient, value: str) -> None:
    assert_problem(await client.get("/products", headers={"X-Tenant-ID": value}), 400)


async def test_whether_a_tenant_exists_is_told_only_to_a_holder_of_its_key(
    client: httpx.AsyncClient, tenant_a: TenantHandle, tenant_b: TenantHandle
) -> None:
    """Without its key, a tenant that does not exist is answered exactly as one that does:
    a 404 for unknown names let anyone list the service's customers by trying them."""
    guessed = "Bearer tsk_" + "x" * 40
    for authorization in (None, guessed, f"Bearer {tenant_b.api_key}", "Basic dXNlcjpwYXNz"):
        answers = []
        for slug in (tenant_a.slug, "nobody_here"):
            headers = {"X-Tenant-ID": slug}
            if authorization is not None:
                headers["Authorization"] = authorization
            answer = await client.get("/products", headers=headers)
            answers.append((answer.status_code, answer.json()["detail"]))
        assert answers[0] == answers[1], authorization
        assert answers[0][0] == (403 if authorization and tenant_b.api_key in authorization
                                 else 401)  # fmt: skip


@pytest.mark.parametrize(
    ("authorization", "detail"),
    [
        (None, "an 'Authorization: Bearer <key>' is required"),
        ("Basic dXNlcjpwYXNz", "an 'Authorization: Bearer <key>' is required"),
        ("Bearer", "an 'Authorization: Bearer <key>' is required"),
        ("Bearer tsk_not_a_real_key_at_all_0000", "the API key is not valid"),
        ("bearer wrong", "the API key is not valid"),  # too short to be a key
        ("Bearer tsk_has a space in it_000000", "the API key is not valid"),
    ],
)
async def test_missing_or_bad_key_is_401(
    client: httpx.AsyncClient, tenant_a: TenantHandle, authorization: str | None, detail: str
) -> None:
    """Each says which: a client without a key is told to send one, one with a wrong key that
    its key is wrong."""
    headers = {"X-Tenant-ID": tenant_a.slug}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = await client.get("/products", headers=headers)
    assert assert_problem(response, 401)["detail"] == detail
    assert response.headers["www-authenticate"] == "Bearer"


async def test_whitespace_around_the_header_values_is_not_part_of_them(
    client: httpx.AsyncClient, tenant_a: TenantHandle, running: Running
) -> None:
    """RFC 9110: a field value has no leading or trailing whitespace; uvicorn's httptools
    parser passes it on, so the service drops it (inside the value it stays refused)."""
    headers = {"X-Tenant-ID": f" {tenant_a.slug}\t", "Authorization": f"Bearer {tenant_a.api_key} "}
    assert (await client.get("/products", headers=headers)).status_code == 200
    # Nor is the scheme's case, or how many spaces follow it (RFC 9110 11.4: 1*SP).
    for spaces in range(1, 6):
        headers["Authorization"] = f"bEARER{' ' * spaces}{tenant_a.api_key}"
        assert (await client.get("/products", headers=headers)).status_code == 200
    # Served, but remembered as verified in one spelling of the spaces only: one key must not
    # be able to fill the snapshot's cache with as many entries as a header has room for.
    verified = running.state["registry"].snapshot.verified
    assert not [a for s, a in verified if s == tenant_a.slug and a.startswith("bEARER  ")]


async def test_key_of_another_tenant_is_403(
    client: httpx.AsyncClient, tenant_a: TenantHandle, tenant_b: TenantHandle, running: Running
) -> None:
    # Both keys in the snapshot first: a poll that landed between the two tenants' creation
    # would know tenant_a but not tenant_b's key, and a key it does not know is 401, by design.
    await running.state["registry"].refresh()
    crossed = {"X-Tenant-ID": tenant_a.slug, "Authorization": f"Bearer {tenant_b.api_key}"}
    assert_problem(await client.get("/products", headers=crossed), 403)


async def test_suspended_tenant_is_403_and_resumes(
    client: httpx.AsyncClient, tenant_a: TenantHandle, running: Running, engine: AsyncEngine
) -> None:
    assert (await client.get("/products", headers=tenant_a.headers)).status_code == 200
    async with engine.begin() as conn:
        await set_status(conn, tenant_a.slug, TenantStatus.SUSPENDED)
    await running.state["registry"].refresh()
    body = assert_problem(await client.get("/products", headers=tenant_a.headers), 403)
    assert body["title"] == "Tenant suspended"
    async with engine.begin() as conn:
        await set_status(conn, tenant_a.slug, TenantStatus.ACTIVE)
    await running.state["registry"].refresh()
    assert (await client.get("/products", headers=tenant_a.headers)).status_code == 200


async def test_revoked_key_is_401_after_a_poll(
    client: httpx.AsyncClient, tenant_a: TenantHandle, engine: AsyncEngine
) -> None:
    """No explicit refresh: the workers' poll alone (every 0.2 s in the test settings) must
    pick up the revocation. Waited for with a deadline, not a fixed pause: a loaded machine
    may run a poll late, but without one the key would stay valid for good."""
    async with engine.begin() as conn:
        key_id, key = await create_key(conn, tenant_a.slug)
    headers = {"X-Tenant-ID": tenant_a.slug, "Authorization": f"Bearer {key}"}

    async def answers(status: int) -> bool:
        return (await client.get("/products", headers=headers)).status_code == status

    # A new key is picked up by the poll too (unknown keys never trigger a refresh).
    await until(lambda: answers(200), "the poll never picked up the new key")
    async with engine.begin() as conn:
        await revoke_key(conn, tenant_a.slug, key_id)
    await until(lambda: answers(401), "the poll never picked up the revocation")
    assert_problem(await client.get("/products", headers=headers), 401)
    assert (await client.get("/products", headers=tenant_a.headers)).status_code == 200


async def test_health_and_docs_need_no_tenant(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ready"}
    assert (await client.get("/openapi.json")).status_code == 200


async def test_new_tenant_is_served_at_once(
    client: httpx.AsyncClient, tenant_factory: TenantFactory
) -> None:
    fresh = await tenant_factory("fresh")
    assert (await client.get("/products", headers=fresh.headers)).status_code == 200


async def test_only_verified_pairs_are_remembered(
    client: httpx.AsyncClient, tenant_a: TenantHandle, tenant_b: TenantHandle, running: Running
) -> None:
    """Refused requests leave nothing behind, whatever a client sends: the memo of verified
    (X-Tenant-ID, Authorization) pairs is bounded by the live keys."""
    registry = running.state["registry"]
    await registry.refresh()
    for i in range(20):
        guessed = {"X-Tenant-ID": tenant_a.slug, "Authorization": f"Bearer guess{i:020d}"}
        assert_problem(await client.get("/products", headers=guessed), 401)
    crossed = {"X-Tenant-ID": tenant_a.slug, "Authorization": f"Bearer {tenant_b.api_key}"}
    assert_problem(await client.get("/products", headers=crossed), 403)
    assert_problem(await client.get("/products", headers=crossed), 403)  # and again
    assert (await client.get("/products", headers=tenant_a.headers)).status_code == 200
    [(tenant, _)] = registry.snapshot.verified.values()
    assert tenant == registry.get(tenant_a.slug)


async def test_a_tenant_archived_before_the_next_poll_is_404_on_every_route(
    database_url: str, engine: AsyncEngine, tenant_factory: TenantFactory
) -> None:
    """A worker whose snapshot still lists the tenant (no poll for an hour here) finds its
    tables gone with the renamed schema; each route answers the 404 the next poll would."""
    tenant = await tenant_factory()
    async with running_app(make_settings(database_url, registry_poll_seconds=3600)) as running:
        client, headers = running.client, tenant.headers
        created = await client.post("/products", json={"name": "p", "price_cents": 1, "stock": 5},
                                    headers=headers)  # fmt: skip
        assert (await client.get("/products", headers=headers)).status_code == 200
        async with engine.begin() as conn:
            await archive(conn, tenant.slug)
        product = created.json()["id"]
        order = {"user_id": 1, "items": [{"product_id": product, "quantity": 1}]}
        answers = [
            await client.get("/products", headers=headers),  # the hot read (raw connection)
            await client.get(f"/products/{product}", headers=headers),  # the ORM
            await client.post("/orders", json=order, headers=headers),  # the hot write
            await client.get("/products", headers=headers),  # the snapshot is current now
        ]
    for answer in answers:
        body = assert_problem(answer, 404)
        assert body["detail"] == f"no tenant {tenant.slug!r}"


async def _unservable_on_every_route(
    client: httpx.AsyncClient, tenant: TenantHandle, why: str
) -> None:
    """The hot read (a raw connection), the ORM, the hot write: each a 503 that says why."""
    order = {"user_id": 1, "items": [{"product_id": 1, "quantity": 1}]}
    answers = [
        await client.get("/products", headers=tenant.headers),
        await client.get("/products/1", headers=tenant.headers),
        await client.post("/orders", json=order, headers=tenant.headers),
    ]
    for answer in answers:
        body = assert_problem(answer, 503)
        assert body["detail"] == f"tenant {tenant.slug!r} cannot be served: {why}"


async def test_a_served_tenant_without_its_tables_is_503_on_every_route(
    client: httpx.AsyncClient, tenant_factory: TenantFactory, engine: AsyncEngine
) -> None:
    """Migrated down to base (an empty tenant may be) and still active: its requests say
    the tenant cannot be served, where they were 500s; back at head, it serves again."""
    tenant = await tenant_factory()
    assert (await fleet.migrate_all(engine, "base", slugs=[tenant.slug])).migrated == 1
    await _unservable_on_every_route(client, tenant, "its tables are missing")
    assert (await fleet.migrate_all(engine, slugs=[tenant.slug])).migrated == 1
    assert (await client.get("/products", headers=tenant.headers)).status_code == 200


async def test_a_served_tenant_without_its_role_is_503_until_isolate_makes_it_again(
    client: httpx.AsyncClient, tenant_factory: TenantFactory, engine: AsyncEngine
) -> None:
    """The tenant's database role dropped by hand (a cleanup of "unused" roles): each request
    was a 500 "unhandled error". Now the tenant cannot be served, and says why; `tenantctl
    isolate` makes the role again and it serves."""
    tenant = await tenant_factory()
    assert tenant.role is not None
    async with engine.begin() as conn:
        await drop_role(conn, tenant.role)
    await _unservable_on_every_route(client, tenant, "its database role is missing")
    assert await isolate(engine, tenant.slug) == [tenant.slug]
    assert (await client.get("/products", headers=tenant.headers)).status_code == 200


async def test_a_tenant_behind_the_code_is_503_until_migrated(
    client: httpx.AsyncClient, tenant_factory: TenantFactory, engine: AsyncEngine
) -> None:
    """Code deployed before the fleet's migration (or a tenant that could not migrate) meets
    tables without a column it uses: each such request was a 500 "unhandled error". Now the
    tenant cannot be served and says why, and the log names the way out; the routes its
    revision does fit go on being served."""
    tenant = await tenant_factory()
    assert (await fleet.migrate_all(engine, "t0003", slugs=[tenant.slug])).migrated == 1
    user = {"email": "behind@x.io", "name": "B"}
    answers = [
        await client.get("/users", headers=tenant.headers),  # users.erased_at: t0004
        await client.post("/users", json=user, headers=tenant.headers),
    ]
    for answer in answers:
        body = assert_problem(answer, 503)
        assert body["detail"] == (
            f"tenant {tenant.slug!r} cannot be served: its tables are behind this version of "
            "the service"
        )
    assert (await client.get("/products", headers=tenant.headers)).status_code == 200
    assert (await fleet.migrate_all(engine, slugs=[tenant.slug])).migrated == 1
    assert (await client.post("/users", json=user, headers=tenant.headers)).status_code == 201


async def test_a_tenants_answers_are_for_its_client_only(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    """The tenant is in a header, so two tenants' answers share a URL: a cache that keyed by
    URL alone (a CDN told to cache everything) would serve one tenant's rows to the next. Every
    answer to a tenant forbids shared caches and says it varies by tenant and key."""
    made = await client.post("/products", json={"name": "p", "price_cents": 1, "stock": 1},
                             headers=tenant_a.headers)  # fmt: skip
    one = await client.get(f"/products/{made.json()['id']}", headers=tenant_a.headers)
    for answer in (made, one, await client.get("/products", headers=tenant_a.headers)):
        assert answer.headers["cache-control"] == "private, no-cache", answer.headers
        assert answer.headers["vary"] == "X-Tenant-ID, Authorization"
    assert "cache-control" not in (await client.get("/healthz")).headers  # no tenant's data
