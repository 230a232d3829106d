"""The service's own CPU per request, without HTTP, wrk or a second worker (``bench/run.sh
inproc``): each app runs in a process of its own that drives it through ASGI directly, with
CONCURRENCY requests in flight, and reads its own CPU time (``time.process_time``) around
ROUNDS x REQUESTS W3 reads, then as many W4 orders. The apps take turns, in alternating order.

The timed runs of ``bench/run.py`` move by about 5 % from one run to the next: two workers,
the server's backends and wrk share two cores. Here only the server's backends share the
machine with the one process measured, and the figures repeat to within 1-2 %: enough to see
a change of a few microseconds in the hot paths, which a timed run cannot. What it leaves out:
uvicorn, the HTTP parsing, and the server's CPU (which ``bench/run.py`` reports).

Knobs: T, PRODUCTS, USERS, STOCK (as ``bench/run.py``), REPEATS (turns, default 4),
ROUNDS (per turn, 3), REQUESTS (per round, 4000), CONCURRENCY (16), APPS
(``tenant,same,pinned``: the tenant app over T tenants, over one, and the pinned app).
"""

import asyncio
import importlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import uvloop
from starlette.types import ASGIApp, Message

from bench.fleet import migrated_cluster, provision
from bench.run import (
    CFG,
    keys_for,
    pinned_env,
    seed_all,
    service_env,
    service_role_url,
    settle,
)

KNOBS = {"ROUNDS": 3, "REQUESTS": 4000, "CONCURRENCY": 16}
RUN = {k: int(os.environ.get(k, v)) for k, v in KNOBS.items()}
REPEATS = int(os.environ.get("REPEATS", "4"))
APPS = os.environ.get("APPS", "tenant,same,pinned").split(",")
TARGETS = {"tenant": "tenantsvc.main:app", "same": "tenantsvc.main:app",
           "pinned": "bench.pinned_app:app"}  # fmt: skip


_RUNNING: set[asyncio.Task[None]] = set()  # the lifespan tasks, held until the process ends


async def _started(app: ASGIApp) -> dict[str, Any]:
    """Run the app's lifespan startup; its state, which every request's scope gets a copy of."""
    state: dict[str, Any] = {}
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": state}
    _RUNNING.add(asyncio.create_task(app(scope, inbox.get, outbox.put)))  # type: ignore[arg-type]
    await inbox.put({"type": "lifespan.startup"})
    started = await outbox.get()
    assert started["type"] == "lifespan.startup.complete", started
    return state


class Driver:
    """Requests sent straight to the app, tenants taken round-robin as wrk's scripts do."""

    def __init__(self, app: ASGIApp, state: dict[str, Any], keys: list[list[str]]) -> None:
        self.app, self.state = app, state
        self.headers = [[(b"host", b"bench"), (b"x-tenant-id", slug.encode()),
                         (b"authorization", f"Bearer {key}".encode()),
                         (b"content-type", b"application/json")] for slug, key in keys]  # fmt: skip
        self.random = random.Random(1)
        self.sent = self.failed = 0

    def _live_product(self) -> int:
        while (product := self.random.randint(1, CFG["PRODUCTS"])) % 10 == 0:
            pass  # every 10th is soft-deleted
        return product

    def _request(self, mode: str) -> tuple[Message, bytes]:
        headers = self.headers[self.sent % len(self.headers)]
        self.sent += 1
        scope: Message = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                          "scheme": "http", "root_path": "", "headers": headers,
                          "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
                          "state": self.state.copy()}  # fmt: skip
        if mode == "read":
            after = self.random.randint(0, CFG["PRODUCTS"] - 20)
            query = f"limit=20&after_id={after}".encode()
            return {**scope, "method": "GET", "path": "/products", "raw_path": b"/products",
                    "query_string": query}, b""  # fmt: skip
        order = {"user_id": self.random.randint(1, CFG["USERS"]),
                 "items": [{"product_id": self._live_product(), "quantity": 1}]}  # fmt: skip
        return {**scope, "method": "POST", "path": "/orders", "raw_path": b"/orders",
                "query_string": b""}, json.dumps(order).encode()  # fmt: skip

    async def one(self, mode: str) -> None:
        scope, body = self._request(mode)

        async def receive() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 300:
                self.failed += 1

        await self.app(scope, receive, send)

    async def round(self, mode: str) -> float:
        """REQUESTS requests, CONCURRENCY at a time: the process's CPU microseconds per
        request."""
        each = RUN["REQUESTS"] // RUN["CONCURRENCY"]

        async def sender() -> None:
            for _ in range(each):
                await self.one(mode)

        started = time.process_time()
        await asyncio.gather(*(sender() for _ in range(RUN["CONCURRENCY"])))
        return (time.process_time() - started) / (each * RUN["CONCURRENCY"]) * 1e6


async def drive(target: str, keys: list[list[str]]) -> dict[str, list[float]]:
    module, name = target.split(":")
    app: ASGIApp = getattr(importlib.import_module(module), name)
    driver = Driver(app, await _started(app), keys)
    out: dict[str, list[float]] = {}
    for mode in ("read", "write"):
        await driver.round(mode)  # warm-up
        out[mode] = [round(await driver.round(mode), 1) for _ in range(RUN["ROUNDS"])]
    assert driver.failed == 0, f"{driver.failed} of {driver.sent} requests failed"
    return out


def turn(app: str, env: dict[str, str], keys: Path) -> dict[str, list[float]]:
    """One app in a process of its own."""
    command = [sys.executable, "-m", "bench.inproc", TARGETS[app], str(keys), app]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{app}: {done.stderr[-2000:]}")
    figures: dict[str, list[float]] = json.loads(done.stdout.splitlines()[-1])
    return figures


def main() -> None:
    with migrated_cluster() as (pg, env):
        slugs = [f"t{i:05d}" for i in range(CFG["T"])]
        asyncio.run(provision(pg.url, slugs))
        asyncio.run(seed_all(pg.url, slugs, CFG["PRODUCTS"]))
        settle(pg)
        keys = pg.root / "keys.json"
        keys.write_text(json.dumps(asyncio.run(keys_for(pg.url, slugs))))
        env["BENCH_SERVICE_DATABASE_URL"] = asyncio.run(service_role_url(pg.url))
        envs = {"tenant": service_env(env), "same": service_env(env),
                "pinned": pinned_env(env, slugs[0])}  # fmt: skip
        cpu: dict[str, dict[str, list[float]]] = {a: {"read": [], "write": []} for a in APPS}
        for k in range(REPEATS):
            for app in APPS if k % 2 == 0 else APPS[::-1]:
                for mode, figures in turn(app, envs[app], keys).items():
                    cpu[app][mode] += figures
                print(f"[inproc] turn {k + 1} {app}: {cpu[app]}", file=sys.stderr, flush=True)
    median = {a: {m: statistics.median(v) for m, v in cpu[a].items()} for a in APPS}
    result: dict[str, Any] = {"config": {**CFG, **RUN, "REPEATS": REPEATS},
                              "cpu_us_per_request": cpu, "median": median}  # fmt: skip
    if "pinned" in APPS:
        result["over_pinned"] = {a: {m: round(median[a][m] / median["pinned"][m], 3)
                                     for m in ("read", "write")} for a in APPS}  # fmt: skip
    print("RESULT " + json.dumps(result))


def _drive_one() -> None:
    """Child process: ``python -m bench.inproc TARGET KEYS APP``."""
    target, keys, app = sys.argv[1:4]
    tenants = json.loads(Path(keys).read_text())
    uvloop.install()
    print(json.dumps(asyncio.run(drive(target, tenants[:1] if app == "same" else tenants))))


if __name__ == "__main__":
    if len(sys.argv) > 1:
        _drive_one()
    else:
        main()
