"""Leak fuzzing: many tenants whose rows carry their slug, hammered concurrently through the
real app and pool while faults are injected; every successful answer must carry only its own
tenant's marker, and afterwards no schema may hold a row of another tenant.

Shared by the test suite (bounded) and ``bench/leakfuzz.py`` (long runs).
"""

import asyncio
import random
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

MARKER = re.compile(r"\b(m[0-9a-z_]+?)~")  # names and emails carry "<slug>~"


@dataclass
class Tenant:
    slug: str
    schema: str
    api_key: str
    role: str | None = None  # the database role its transactions must run as
    users: int = 0
    products: int = 0

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Tenant-ID": self.slug, "Authorization": f"Bearer {self.api_key}"}


@dataclass
class Report:
    requests: int = 0
    ok: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    leaks: list[str] = field(default_factory=list)
    foreign_rows: int = -1
    answers: dict[tuple[str, str], tuple[str, bool]] = field(default_factory=dict)


def foreign_markers(body: str, slug: str) -> list[str]:
    return [m for m in MARKER.findall(body) if m != slug]


async def seed(client: httpx.AsyncClient, tenant: Tenant, products: int, users: int) -> None:
    items = [{"name": f"{tenant.slug}~p{i}", "price_cents": 100, "stock": 10**6}
             for i in range(products)]  # fmt: skip
    response = await client.post("/products/bulk", json={"items": items}, headers=tenant.headers)
    assert response.status_code == 201, response.text
    for i in range(users):
        body = {"email": f"u{i}@{tenant.slug}~.test", "name": f"{tenant.slug}~u{i}"}
        assert (await client.post("/users", json=body, headers=tenant.headers)).status_code == 201
    tenant.products, tenant.users = products, users


Operation = Callable[[httpx.AsyncClient, Tenant, random.Random], Awaitable[httpx.Response]]


async def _list(c: httpx.AsyncClient, t: Tenant, r: random.Random) -> httpx.Response:
    params = {"after_id": r.randint(0, t.products), "limit": 20}
    return await c.get("/products", params=params, headers=t.headers)


async def _get(c: httpx.AsyncClient, t: Tenant, r: random.Random) -> httpx.Response:
    return await c.get(f"/products/{r.randint(1, t.products)}", headers=t.headers)


async def _create(c: httpx.AsyncClient, t: Tenant, r: random.Random) -> httpx.Response:
    body = {"name": f"{t.slug}~new{r.randint(0, 10**9)}", "price_cents": 1, "stock": 5}
    return await c.post("/products", json=body, headers=t.headers)


async def _order(c: httpx.AsyncClient, t: Tenant, r: random.Random) -> httpx.Response:
    body = {"user_id": r.randint(1, t.users),
            "items": [{"product_id": r.randint(1, t.products), "quantity": 1}]}  # fmt: skip
    return await c.post("/orders", json=body, headers=t.headers)


async def _keyed_order(c: httpx.AsyncClient, t: Tenant, r: random.Random) -> httpx.Response:
    """Every tenant uses the same few keys for the same bodies: a replay served from another
    tenant's keys would look valid to the client, and only its answer would tell."""
    n = r.randint(1, 8)
    body = {"user_id": 1, "items": [{"product_id": n, "quantity": 1}]}
    return await c.post("/orders", json=body, headers={**t.headers, "Idempotency-Key": f"k{n}"})


async def _cancel_order(c: httpx.AsyncClient, t: Tenant, r: random.Random) -> httpx.Response:
    """An order placed, then cancelled. Order ids overlap between tenants, so a cancel that
    reached another tenant's schema would find an order there too."""
    placed = await _order(c, t, r)
    if placed.status_code != 201:
        return placed
    cancelled = await c.post(f"/orders/{placed.json()['id']}/cancel", headers=t.headers)
    cancelled.extensions["placed"] = placed.json()
    return cancelled


async def _rename_user(c: httpx.AsyncClient, t: Tenant, r: random.Random) -> httpx.Response:
    """A rename that reached another tenant's schema would leave this tenant's marker there."""
    body = {"name": f"{t.slug}~u{r.randint(0, 10**9)}"}
    return await c.patch(f"/users/{r.randint(1, t.users)}", json=body, headers=t.headers)


async def _erase_user(c: httpx.AsyncClient, t: Tenant, r: random.Random) -> httpx.Response:
    """A user created, erased, then asked for. User ids overlap between tenants, so an erasure
    that reached another tenant's schema would find a user there, and this one would answer."""
    body = {"email": f"gone{r.randint(0, 10**9)}@{t.slug}~.test", "name": f"{t.slug}~gone"}
    created = await c.post("/users", json=body, headers=t.headers)
    if created.status_code != 201:
        return created
    user_id = created.json()["id"]
    erased = await c.delete(f"/users/{user_id}", headers=t.headers)
    if erased.status_code == 204:
        after = await c.get(f"/users/{user_id}", headers=t.headers)  # 404 is the right answer
        erased.extensions["answered_after"] = after.status_code == 200 and after.text
    return erased


async def _user_orders(c: httpx.AsyncClient, t: Tenant, r: random.Random) -> httpx.Response:
    return await c.get(f"/users/{r.randint(1, t.users)}/orders", headers=t.headers)


async def _whoami(c: httpx.AsyncClient, t: Tenant, r: random.Random) -> httpx.Response:
    """Which schema and role a transaction runs in, on one of the four ways a request gets
    its transaction (the ORM's write and read sessions, the hot paths' raw connections)."""
    way = r.choice(("", "/read-session", "/read", "/write"))
    return await c.get(f"/_fault/whoami{way}", headers=t.headers)


def _fault(path: str) -> Operation:
    async def call(c: httpx.AsyncClient, t: Tenant, r: random.Random) -> httpx.Response:
        return await c.get(path, headers=t.headers)

    return call


CLEAN: list[tuple[str, Operation, int]] = [
    ("list", _list, 30), ("get", _get, 20), ("create", _create, 10), ("order", _order, 10),
    ("keyed_order", _keyed_order, 5), ("cancel_order", _cancel_order, 3),
    ("user_orders", _user_orders, 5), ("rename_user", _rename_user, 3),
    ("erase_user", _erase_user, 2), ("whoami", _whoami, 15),
]  # fmt: skip
FAULTS: list[tuple[str, Operation, int]] = [
    ("raise", _fault("/_fault/raise"), 3), ("timeout", _fault("/_fault/timeout"), 3),
    ("cancel", _fault("/_fault/slow"), 4),
]  # fmt: skip


def check(name: str, tenant: Tenant, response: httpx.Response, report: Report) -> None:
    report.statuses[response.status_code] += 1
    if response.status_code >= 300:
        return
    report.ok += 1
    body = response.text
    leaked = foreign_markers(body, tenant.slug)
    if name == "whoami" and response.json()["search_path"] != f"{tenant.schema}, pg_temp":
        leaked.append(f"search_path {response.json()['search_path']}")
    if name == "whoami" and tenant.role and response.json()["role"] != tenant.role:
        leaked.append(f"role {response.json()['role']}")
    if name == "keyed_order":
        leaked += _other_answer(tenant, response, report)
    if name == "erase_user" and response.extensions.get("answered_after"):
        leaked.append(f"an erased user answers: {response.extensions['answered_after'][:60]}")
    if name == "cancel_order" and "placed" in response.extensions:
        placed, cancelled = response.extensions["placed"], response.json()
        if {**cancelled, "cancelled_at": None} != placed:
            leaked.append(f"cancelled {cancelled} for {placed}")
    if leaked:
        report.leaks.append(f"{tenant.slug} {name}: {sorted(set(leaked))[:3]}")


def _other_answer(tenant: Tenant, response: httpx.Response, report: Report) -> list[str]:
    """A key's answers must all be one order (a replay may arrive before the first answer
    does, and a first answer lost to a fault may never arrive), placed once."""
    key = (tenant.slug, response.request.headers["Idempotency-Key"])
    fresh = "Idempotent-Replayed" not in response.headers
    seen = report.answers.get(key)
    report.answers[key] = (response.text, fresh or (seen is not None and seen[1]))
    if seen is None:
        return []
    if seen[0] != response.text:
        return [f"{key[1]} answered {response.text[:60]} after {seen[0][:60]}"]
    return [f"{key[1]} placed twice"] if fresh and seen[1] else []


async def _one(client: httpx.AsyncClient, tenants: list[Tenant], rng: random.Random,
               operations: list[tuple[str, Operation, int]], report: Report) -> None:  # fmt: skip
    name, operation, _ = rng.choices(operations, weights=[w for *_, w in operations])[0]
    tenant = rng.choice(tenants)
    report.requests += 1
    if name == "cancel":  # the client gives up mid-request: the app's task is cancelled
        report.faults[name] += 1
        try:
            response = await asyncio.wait_for(operation(client, tenant, rng), rng.uniform(0, 0.03))
        except TimeoutError:
            return
    else:
        if name in ("raise", "timeout"):
            report.faults[name] += 1
        response = await operation(client, tenant, rng)
    check(name, tenant, response, report)


async def _killer(engine: AsyncEngine, every_seconds: float, report: Report) -> None:
    """Terminates a random backend of the app now and then, as a failover or an admin would."""
    while True:
        await asyncio.sleep(every_seconds)
        async with engine.connect() as conn:
            killed = await conn.scalar(text(
                "SELECT count(pg_terminate_backend(pid)) FROM (SELECT pid FROM pg_stat_activity "
                "WHERE application_name = 'tenantsvc' AND pid <> pg_backend_pid() "
                "ORDER BY random() LIMIT 1) victims"
            ))  # fmt: skip
        report.faults["terminate_backend"] += int(killed or 0)


async def run(
    client: httpx.AsyncClient,
    tenants: list[Tenant],
    *,
    requests: int,
    concurrency: int,
    faults: bool = True,
    killer: AsyncEngine | None = None,
    seed_value: int = 7,
) -> Report:
    report = Report()
    operations = CLEAN + (FAULTS if faults else [])
    pending = iter(range(requests))
    rng = random.Random(seed_value)

    async def worker() -> None:
        for _ in pending:
            await _one(client, tenants, rng, operations, report)

    kill_task = asyncio.create_task(_killer(killer, 0.05, report)) if killer else None
    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        if kill_task is not None:
            kill_task.cancel()
            await asyncio.gather(kill_task, return_exceptions=True)
    return report


async def foreign_rows(engine: AsyncEngine, tenants: list[Tenant]) -> int:
    """Rows in any tenant schema whose marker names another tenant: must be 0."""
    total = 0
    async with engine.connect() as conn:
        for t in tenants:
            found: Any = await conn.scalar(text(
                f"SELECT (SELECT count(*) FROM {t.schema}.products WHERE name NOT LIKE :m) + "
                f"(SELECT count(*) FROM {t.schema}.users WHERE name NOT LIKE :m)"
            ), {"m": f"{t.slug}~%"})  # fmt: skip
            total += int(found)
    return total
