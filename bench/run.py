"""The benchmark: W1 provision, W2 migrate-all, W3 read, W4 write, tenancy overhead, the
database's ceiling, and (SCALE=1) 10,000 tenants. Needs nothing running; prints
``RESULT {json}`` last. See bench/README.md.

Knobs: T=50 PRODUCTS=1000 USERS=20 STOCK=1000 CONNS=32 DURATION=15 WARMUP=5 REPEATS=3
WORKERS=<nproc> SCALE=0 (SCALE_T=10000 SCALE_PRODUCTS=100 SCALE_WARMUP=60).
"""

import asyncio
import contextlib
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
from sqlalchemy import make_url, text

from bench import ceiling, load
from bench.fleet import (
    ROOT,
    migrate_all_figures,
    migrated_cluster,
    ms,
    provision,
    tenantctl,
    write_sku_revision,
)
from bench.pgcluster import Cluster
from bench.seed import check_invariants, seed
from tenantsvc.db.engine import create_engine
from tenantsvc.settings import Settings
from tenantsvc.tenancy.migrator import EXTRA_VERSIONS_ENV, compiled_script, head
from tenantsvc.tenancy.service_role import create_service_role
from tenantsvc.testing.app import SCRAPE, SCRAPER_TOKEN, pool_checkouts, wait_for_http
from tenantsvc.testing.postgres import free_port

KNOBS = {"T": 50, "PRODUCTS": 1000, "USERS": 20, "STOCK": 1000, "CONNS": 32, "DURATION": 15,
         "WARMUP": 5, "REPEATS": 3, "WORKERS": os.cpu_count() or 1, "SCALE": 0,
         "SCALE_T": 10000, "SCALE_PRODUCTS": 100, "SCALE_WARMUP": 60}  # fmt: skip
CFG = {k: int(os.environ.get(k, v)) for k, v in KNOBS.items()}
SERVICE_ROLE = "tenantsvc_bench_api"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def calibration() -> float:
    """Millions of simple Python loop iterations per second: a CPU speed figure to compare
    machines and runs."""
    started = time.perf_counter()
    total = 0
    for i in range(5_000_000):
        total += i
    return round(5 / (time.perf_counter() - started), 1)


@contextmanager
def service(
    env: dict[str, str],
    workers: int,
    target: str = "tenantsvc.main:app",
    prefix: Sequence[str] = (),
    ready_seconds: float = 60,
) -> Iterator[str]:
    """The service on a free port; ``prefix`` runs it under another program (valgrind)."""
    port = free_port()
    # As recommended for production: tenantctl serve (uvicorn, uvloop + httptools, a listening
    # socket per worker); its logs at WARNING through service_env.
    command = [*prefix, sys.executable, "-m", "cli.main", "serve", "--host", "127.0.0.1",
               "--port", str(port), "--workers", str(workers), "--app", target]  # fmt: skip
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url + "/healthz", process, ready_seconds)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def service_processes(url: str) -> list[psutil.Process]:
    """The server process and its workers (``--port N``, or gunicorn's ``--bind host:N``)."""
    port = url.rsplit(":", 1)[1]
    for proc in psutil.process_iter(["cmdline"]):
        args = proc.info["cmdline"] or []
        if port in args or f"127.0.0.1:{port}" in args:
            return [proc, *proc.children(recursive=True)]
    return []


_BACKEND = re.compile(r"postgres: \S+ postgres 127\.0\.0\.1\(")


def backends() -> list[psutil.Process]:
    """The server's client backends (the bench database's, over TCP, whichever role)."""
    return [proc for proc in psutil.process_iter(["cmdline"])
            if _BACKEND.match(" ".join(proc.info["cmdline"] or []))]  # fmt: skip


def service_rss_mib(url: str) -> float:
    total: int = sum(p.memory_info().rss for p in service_processes(url))
    return round(total / 2**20, 1)


def usage(processes: list[psutil.Process]) -> dict[int, tuple[float, float, int]]:
    """Each process's CPU seconds so far, the kernel's part of them, and its context switches
    (voluntary and involuntary), by pid (processes gone already are left out)."""
    found = {}
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            times, switches = proc.cpu_times(), proc.num_ctx_switches()
            found[proc.pid] = (times.user + times.system, times.system,
                               switches.voluntary + switches.involuntary)  # fmt: skip
    return found


def used_since(
    before: dict[int, tuple[float, float, int]], now: dict[int, tuple[float, float, int]]
) -> list[float]:
    """What the processes alive ``now`` used since ``before``: all of it for those that started
    in between (a backend the pool opened during the run), none of the earlier use of those
    that ended (a closed overflow connection would otherwise count negative)."""
    zero = (0.0, 0.0, 0)
    return [sum(used[i] - before.get(pid, zero)[i] for pid, used in now.items()) for i in range(3)]


def measured(url: str, script: Path) -> load.WrkRun:
    """One wrk run, with what each request cost the service and the server in CPU, in kernel
    CPU and in context switches: steadier than rates on a noisy machine, and it says where a
    difference comes from (callgrind's instructions, bench/instructions.py, leave the kernel
    and the switches out)."""
    service = service_processes(url)
    before = usage(service), usage(backends()), checkouts(url)
    run = load.run(url, script, CFG["CONNS"], CFG["DURATION"])
    if run.requests:
        for name, spent in (("service", used_since(before[0], usage(service))),
                            ("postgres", used_since(before[1], usage(backends())))):  # fmt: skip
            cpu, kernel, switches = (value / run.requests for value in spent)
            run.per_request |= {f"{name}_us": cpu * 1e6, f"{name}_kernel_us": kernel * 1e6,
                                f"{name}_switches": switches}  # fmt: skip
    after = checkouts(url)
    run.checkouts = {found: after[found] - before[2].get(found, 0.0) for found in after}
    return run


def checkouts(url: str) -> dict[str, float]:
    """The service's tenant checkouts so far, by what they found (home, warm, cold), all
    workers together; each worker's figure is up to METRICS_SAMPLE_SECONDS old, a second's
    requests against a run's fifteen. Nothing from a server without tenantsvc's metrics."""
    answer = httpx.get(url + "/metrics", headers=SCRAPE, timeout=10)
    return pool_checkouts(answer.text) if answer.status_code == 200 else {}


def shares(runs: list[load.WrkRun]) -> dict[str, float]:
    """Each kind of checkout as a share of all of them in ``runs`` (empty without affinity)."""
    totals: Counter[str] = Counter()
    for run in runs:
        totals.update(run.checkouts or {})
    everything = sum(totals.values())
    return (
        {found: round(count / everything, 3) for found, count in totals.items()}
        if everything
        else {}
    )


# What summary() reports per request, the service's and the server's: each measure, the key
# its runs hold it under (``{side}_{key}``, measured()) and the digits it is rounded to
PER_REQUEST = {"cpu_us_per_request": ("us", 0), "kernel_us_per_request": ("kernel_us", 0),
               "switches_per_request": ("switches", 2)}  # fmt: skip


def summary(runs: list[load.WrkRun]) -> dict[str, Any]:
    return {"rps": round(statistics.median(r.rps for r in runs), 1),
            "p50_ms": round(statistics.median(r.p50_ms for r in runs), 2),
            "p99_ms": round(statistics.median(r.p99_ms for r in runs), 2),
            "non2xx": sum(r.non2xx for r in runs),
            "socket_errors": sum(r.socket_errors for r in runs),
            "rps_each_run": [round(r.rps, 1) for r in runs],
            **{measure: {side: _median(runs, f"{side}_{key}", digits)
                         for side in ("service", "postgres")}
               for measure, (key, digits) in PER_REQUEST.items()},
            "checkout_shares": shares(runs)}  # fmt: skip


def _median(runs: list[load.WrkRun], key: str, digits: int = 0) -> float:
    value = statistics.median(r.per_request.get(key, 0.0) for r in runs)
    return round(value, digits) if digits else round(value)


def rounds(runs: list[tuple[str, Path]], repeats: int) -> list[dict[str, Any]]:
    """Every (url, script) once per round, the rounds repeated: read, write, read, write, ...
    and tenant app, pinned app, tenant app, ...: a drifting machine hurts them all alike.
    Every other round runs in reverse, so a run does not always follow the same one (each
    read run follows a write run, whose after-effects, dirty pages and autovacuum, spill into
    it; a probe alternating same-tenant and pinned runs saw their ratio swing 0.94-1.13 with
    the order)."""
    for url, script in runs:
        load.run(url, script, CFG["CONNS"], CFG["WARMUP"])
    results: list[list[load.WrkRun]] = [[] for _ in runs]
    for k in range(repeats):
        order = range(len(runs)) if k % 2 == 0 else reversed(range(len(runs)))
        for i in order:
            url, script = runs[i]
            results[i].append(measured(url, script))
    return [summary(done) for done in results]


def interleaved(
    url: str, read: Path, write: Path, repeats: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    r, w = rounds([(url, read), (url, write)], repeats)
    return r, w


async def oversell_probe(url: str, slug: str, key: str, orders_at: str | None = None) -> bool:
    """64 concurrent 1-unit orders for a new 5-unit product, sent to ``orders_at`` (another
    app serving the same tables; the service itself by default)."""
    headers = {"X-Tenant-ID": slug, "Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        product = await client.post(
            "/products", json={"name": "probe", "price_cents": 1, "stock": 5}
        )
        body = {"user_id": 1, "items": [{"product_id": product.json()["id"], "quantity": 1}]}
        orders = f"{orders_at or url}/orders"
        responses = await asyncio.gather(*(client.post(orders, json=body) for _ in range(64)))
        stock = (await client.get(f"/products/{product.json()['id']}")).json()["stock"]
    created = sum(1 for r in responses if r.status_code == 201)
    return created == 5 and stock == 0 and all(r.status_code in (201, 409) for r in responses)


def settle(pg: Cluster) -> float:
    """VACUUM (ANALYZE) after loading, as ``pgbench -i`` does, then a CHECKPOINT. Otherwise
    what loading leaves behind lands in the measurements: autovacuum's first pass over
    thousands of fresh tables (each ANALYZE invalidates the table's cached plans and relation
    cache entries in every backend), the dead catalog rows of W2's DDL (one ALTER TABLE and
    one CREATE INDEX per tenant), and the write-back of the loaded pages."""
    return round(ceiling.psql_seconds(pg.libpq_url, "VACUUM (ANALYZE);\nCHECKPOINT;"), 1)


def db_settings(url: str) -> Settings:
    return Settings(database_url=url, pool_size=4, max_overflow=0)


async def seed_all(url: str, slugs: list[str], products: int) -> None:
    engine = create_engine(db_settings(url))
    try:
        await seed(engine, [f"tenant_{s}" for s in slugs], products, CFG["USERS"], CFG["STOCK"])
    finally:
        await engine.dispose()


async def invariants(url: str, slugs: list[str]) -> dict[str, object]:
    engine = create_engine(db_settings(url))
    try:
        return await check_invariants(engine, [f"tenant_{s}" for s in slugs], CFG["STOCK"])
    finally:
        await engine.dispose()


async def keys_for(url: str, slugs: list[str]) -> list[tuple[str, str]]:
    from tenantsvc.tenancy.admin import create_key

    engine = create_engine(db_settings(url))
    pairs = []
    try:
        for slug in slugs:
            async with engine.begin() as conn:
                pairs.append((slug, (await create_key(conn, slug))[1]))
    finally:
        await engine.dispose()
    return pairs


async def server_settings(url: str) -> dict[str, str]:
    engine = create_engine(db_settings(url))
    names = ("server_version", "max_connections", "shared_buffers", "fsync", "synchronous_commit")
    try:
        async with engine.connect() as conn:
            return {n: str((await conn.execute(text(f"SHOW {n}"))).scalar_one()) for n in names}
    finally:
        await engine.dispose()


def ceilings(pg: Cluster, slugs: list[str], sku_dir: str, base: str) -> dict[str, Any]:
    t, products = len(slugs), CFG["PRODUCTS"]
    rates = pgbench_rates(pg, asyncio.run(as_served(pg.url, slugs)))
    schemas = [f"ceiling_{i:05d}" for i in range(t)]
    head_sql = compiled_script(None, base)
    w1 = ceiling.psql_seconds(pg.libpq_url, ceiling.provision_sql(schemas, head_sql))
    engine = create_engine(db_settings(pg.url))
    asyncio.run(seed(engine, schemas, products, CFG["USERS"], CFG["STOCK"]))
    os.environ[EXTRA_VERSIONS_ENV] = sku_dir
    try:
        sku_sql = compiled_script(base, head("tenant"))
    finally:
        os.environ.pop(EXTRA_VERSIONS_ENV, None)
    w2 = ceiling.psql_seconds(pg.libpq_url, ceiling.migration_sql(schemas, sku_sql))
    ceiling.psql_seconds(pg.libpq_url, ceiling.drop_sql(schemas))
    return {"w1_psql_per_tenant_ms": round(w1 / t * 1000, 2), "w2_psql_total_s": round(w2, 3),
            **rates}  # fmt: skip


async def as_served(url: str, slugs: list[str]) -> list[ceiling.Tenant]:
    """Each tenant's schema and role, as its transactions name them."""
    engine = create_engine(db_settings(url))
    query = text("SELECT slug, schema_name, role_name FROM tenantsvc.tenants")
    try:
        async with engine.connect() as conn:
            found = {r.slug: (r.schema_name, r.role_name) for r in await conn.execute(query)}
    finally:
        await engine.dispose()
    return [found[slug] for slug in slugs]


def pgbench_rates(pg: Cluster, tenants: list[ceiling.Tenant]) -> dict[str, Any]:
    """W3 and W4 through pgbench over every tenant (the ceiling: a random tenant per
    transaction), and over one schema, in REPEATS interleaved rounds; medians. The second is
    the database's own cost of spreading the load over T schemas, which the tenancy overhead
    (T tenants against one pinned schema) contains whatever the service does. Each round's
    one schema is another tenant, so its stock is never what runs out."""
    products, users = CFG["PRODUCTS"], CFG["USERS"]
    # Over every tenant: the same scripts every round.
    w3_all, w4_all = (
        ceiling.w3_scripts(tenants, products),
        ceiling.w4_scripts(tenants, products, users),
    )
    runs: defaultdict[str, list[float]] = defaultdict(list)
    for round_ in range(CFG["REPEATS"]):
        schema = [tenants[-1 - round_ % len(tenants)]]
        scripts = {"w3": w3_all, "w3_one": ceiling.w3_scripts(schema, products),
                   "w4": w4_all, "w4_one": ceiling.w4_scripts(schema, products, users)}  # fmt: skip
        for name, script in scripts.items():
            tps = ceiling.pgbench(pg.libpq_url, script, CFG["CONNS"], CFG["DURATION"])
            runs[name].append(round(tps, 1))
    rates: dict[str, Any] = {}
    for w in ("w3", "w4"):
        spread = round(statistics.median(runs[w]), 1)
        one = round(statistics.median(runs[f"{w}_one"]), 1)
        rates |= {f"{w}_pgbench_tps": spread, f"{w}_pgbench_each_run": runs[w],
                  f"{w}_one_schema_tps": one, f"{w}_one_schema_each_run": runs[f"{w}_one"],
                  f"{w}_spread_over_one_schema": round(spread / one, 3)}  # fmt: skip
    return rates


async def service_role_url(url: str) -> str:
    """A service role (``tenantctl service-role``), and the URL that connects as it."""
    engine = create_engine(db_settings(url))
    try:
        await create_service_role(engine, SERVICE_ROLE)
    finally:
        await engine.dispose()
    return make_url(url).set(username=SERVICE_ROLE).render_as_string(hide_password=False)


def service_env(env: dict[str, str], pre_ping: bool = False) -> dict[str, str]:
    """The recommended production settings on this machine: connected as a service role
    (``BENCH_SERVICE_DATABASE_URL``, once made), nproc workers, pool 20 + overflow 10 per
    worker (2 x 30 = 60 of the server's 100 connections), pre-ping off (SQLAlchemy's asyncpg
    pre-ping costs BEGIN + ping + ROLLBACK, three round trips per checkout; a dead connection
    is found by its first failure instead, closed and replaced, which
    tests/isolation/test_outages.py proves), logs at WARNING."""
    url = env.get("BENCH_SERVICE_DATABASE_URL", env["TENANTSVC_DATABASE_URL"])
    return {**env, "TENANTSVC_DATABASE_URL": url,
            "TENANTSVC_POOL_SIZE": "20", "TENANTSVC_MAX_OVERFLOW": "10",
            "TENANTSVC_POOL_PRE_PING": str(pre_ping).lower(),
            "TENANTSVC_LOG_LEVEL": "WARNING", "TENANTSVC_METRICS_TOKEN": SCRAPER_TOKEN}  # fmt: skip


def pinned_env(env: dict[str, str], slug: str) -> dict[str, str]:
    """``bench/pinned_app.py``'s environment, pinned to ``slug``'s schema. It connects as the
    tables' owner: with tenancy bypassed, it has no tenant role to become."""
    return {**service_env(env), "TENANTSVC_DATABASE_URL": env["TENANTSVC_DATABASE_URL"],
            "BENCH_PIN_SCHEMA": f"tenant_{slug}"}  # fmt: skip


def http_workloads(
    env: dict[str, str], keys: list[tuple[str, str]], slugs: list[str]
) -> dict[str, Any]:
    read = load.script("read", keys, CFG["PRODUCTS"], CFG["USERS"], seed=1)
    write = load.script("write", keys, CFG["PRODUCTS"], CFG["USERS"], seed=2)
    # The tenancy overhead's baseline, and the same comparison with every request on the
    # pinned tenant: what the tenancy machinery costs apart from spreading the load over T
    # schemas (the pinned app touches one). Both apps run side by side, their runs interleaved.
    one_read = load.script("read", keys[:1], CFG["PRODUCTS"], CFG["USERS"], seed=1)
    one_write = load.script("write", keys[:1], CFG["PRODUCTS"], CFG["USERS"], seed=2)
    out: dict[str, Any] = {}
    with (
        service(service_env(env), CFG["WORKERS"]) as url,
        service(pinned_env(env, slugs[0]), CFG["WORKERS"], "bench.pinned_app:app") as pinned,
    ):
        runs = [(url, read), (url, write), (pinned, read), (pinned, write),
                (url, one_read), (url, one_write)]  # fmt: skip
        out["w3_read"], out["w4_write"], p_read, p_write, one_r, one_w = rounds(
            runs, CFG["REPEATS"]
        )
        out["rss_mib"] = service_rss_mib(url)
        out["invariants"] = asyncio.run(invariants(env["TENANTSVC_DATABASE_URL"], slugs))
        out["oversell_probe_ok"] = asyncio.run(oversell_probe(url, slugs[0], keys[0][1]))
    out["tenancy_overhead"] = {
        "w3_pinned_rps": p_read["rps"], "w4_pinned_rps": p_write["rps"],
        "w3_pinned_each_run": p_read["rps_each_run"], "w4_pinned_each_run": p_write["rps_each_run"],
        "w3_tenant_over_pinned": round(out["w3_read"]["rps"] / p_read["rps"], 3),
        "w4_tenant_over_pinned": round(out["w4_write"]["rps"] / p_write["rps"], 3),
        "pinned_non2xx": p_read["non2xx"] + p_write["non2xx"],
        "same_tenant": {"w3_rps": one_r["rps"], "w4_rps": one_w["rps"],
                        "w3_over_pinned": round(one_r["rps"] / p_read["rps"], 3),
                        "w4_over_pinned": round(one_w["rps"] / p_write["rps"], 3),
                        "non2xx": one_r["non2xx"] + one_w["non2xx"]},
    }  # fmt: skip
    # Where the difference goes, per request: the tenant app over T tenants, the same app with
    # every request on one tenant, the pinned app.
    apps = {"w3": (out["w3_read"], one_r, p_read), "w4": (out["w4_write"], one_w, p_write)}
    for measure in PER_REQUEST:
        out["tenancy_overhead"][measure] = {
            w: dict(zip(("tenant", "same_tenant", "pinned"), (a[measure] for a in each),
                        strict=True))
            for w, each in apps.items()
        }  # fmt: skip
    out["variants"] = variants(env, read, write)
    return out


def variants(env: dict[str, str], read: Path, write: Path) -> dict[str, Any]:
    found = {}
    for workers in sorted({1, os.cpu_count() or 1} - {CFG["WORKERS"]}):
        with service(service_env(env), workers) as url:
            r, w = interleaved(url, read, write, 1)
            found[f"workers_{workers}"] = {"w3_rps": r["rps"], "w4_rps": w["rps"],
                                           "non2xx": r["non2xx"] + w["non2xx"]}  # fmt: skip
    with service(service_env(env, pre_ping=True), CFG["WORKERS"]) as url:
        r, w = interleaved(url, read, write, 1)
        found["pre_ping_on"] = {"w3_rps": r["rps"], "w4_rps": w["rps"],
                                "non2xx": r["non2xx"] + w["non2xx"]}  # fmt: skip
    return found


def scale(pg: Cluster, env: dict[str, str], sku_dir: str, base: str) -> dict[str, Any]:
    first = [f"t{i:05d}" for i in range(CFG["T"])]
    more = [f"t{i:05d}" for i in range(CFG["T"], CFG["SCALE_T"])]
    log(f"scale: creating {len(more)} more tenants")
    times = asyncio.run(provision(pg.url, more))
    asyncio.run(seed_all(pg.url, more, CFG["SCALE_PRODUCTS"]))
    everyone = first + more
    out: dict[str, Any] = {"tenants": len(everyone), "w1_provision": ms(times),
                           "vacuum_s": settle(pg)}  # fmt: skip
    with_rev = {**env, EXTRA_VERSIONS_ENV: sku_dir}
    wall, rss, _ = tenantctl(with_rev, "migrate-all")
    out["w2_migrate_all"] = {"wall_s": round(wall, 3), "peak_rss_mib": round(rss / 1024, 1)}
    wall, _, _ = tenantctl(with_rev, "migrate-all")
    out["w2_noop"] = {"wall_s": round(wall, 3)}
    out["vacuum_after_w2_s"] = settle(pg)
    keys = asyncio.run(keys_for(pg.url, everyone))
    products = CFG["SCALE_PRODUCTS"]
    few = load.script("read", keys[: CFG["T"]], products, CFG["USERS"], seed=3)
    many = load.script("read", keys, products, CFG["USERS"], seed=3)
    with service(service_env(env), CFG["WORKERS"]) as url:
        load.run(url, few, CFG["CONNS"], CFG["DURATION"])
        rss_t = service_rss_mib(url)  # after serving T tenants, before any of the others
        cold, at_t, at_scale = cold_then_warm(url, few, many, CFG["REPEATS"])
        rss_scale = service_rss_mib(url)
        backends = backend_memory()
    with service({**service_env(env), "TENANTSVC_POOL_AFFINITY": "false"}, CFG["WORKERS"]) as url:
        fifo_cold, fifo_few, fifo_many = cold_then_warm(url, few, many, 1)
        fifo_backends = backend_memory()
    warmed = CFG["DURATION"] + CFG["SCALE_WARMUP"] + CFG["WARMUP"]
    out["w3_read"] = {f"t{CFG['T']}_rps": at_t["rps"], f"t{len(everyone)}_rps": at_scale["rps"],
                      "ratio": round(at_scale["rps"] / at_t["rps"], 3),
                      f"t{CFG['T']}_each_run": at_t["rps_each_run"],
                      f"t{len(everyone)}_each_run": at_scale["rps_each_run"],
                      "non2xx": at_t["non2xx"] + at_scale["non2xx"],
                      **{measure: {f"t{CFG['T']}": at_t[measure],
                                   f"t{len(everyone)}": at_scale[measure]}
                         for measure in PER_REQUEST},
                      "checkout_shares": {f"t{CFG['T']}": at_t["checkout_shares"],
                                          f"t{len(everyone)}": at_scale["checkout_shares"]},
                      "cold_first_run_rps": round(cold.rps, 1),
                      "warmed_s": warmed}  # fmt: skip
    # The same with tenant affinity off (a plain FIFO pool): one round after the same warm-up.
    out["w3_read_affinity_off"] = {
        f"t{CFG['T']}_rps": round(fifo_few["rps"], 1),
        f"t{len(everyone)}_rps": round(fifo_many["rps"], 1),
        "ratio": round(fifo_many["rps"] / fifo_few["rps"], 3),
        "cold_first_run_rps": round(fifo_cold.rps, 1),
        "non2xx": fifo_few["non2xx"] + fifo_many["non2xx"] + fifo_cold.non2xx,
    }
    out["rss_mib"] = {f"t{CFG['T']}": rss_t, f"t{len(everyone)}": rss_scale}
    out["postgres_backend_private_mib"] = {"affinity_on": backends, "affinity_off": fifo_backends}
    return out


def cold_then_warm(
    url: str, few: Path, many: Path, repeats: int
) -> tuple[load.WrkRun, dict[str, Any], dict[str, Any]]:
    """The first run over every tenant, where each one is cold on every server connection;
    then a warm-up long enough to serve each tenant a few times on its home connection; then
    ``repeats`` rounds of T tenants and of all of them."""
    cold = load.run(url, many, CFG["CONNS"], CFG["DURATION"])
    load.run(url, many, CFG["CONNS"], CFG["SCALE_WARMUP"])
    at_t, at_scale = rounds([(url, few), (url, many)], repeats)
    return cold, at_t, at_scale


def backend_memory() -> dict[str, float]:
    """Private memory (USS) of the server's client backends: their relation, catalog and plan
    caches, which grow with every tenant a backend serves and are never evicted."""
    sizes = []
    for proc in backends():
        with contextlib.suppress(psutil.Error):
            sizes.append(proc.memory_full_info().uss / 2**20)
    if not sizes:
        return {"backends": 0}
    return {"backends": len(sizes), "median": round(statistics.median(sizes), 1),
            "max": round(max(sizes), 1), "total": round(sum(sizes), 1)}  # fmt: skip


def main() -> None:
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"), "machine": {
            "nproc": os.cpu_count(), "load_start": os.getloadavg(),
            "cpu_mloops_per_s": calibration(),
            "platform": platform.platform(), "python": platform.python_version()},
        "config": CFG,
    }  # fmt: skip
    with migrated_cluster() as (pg, env):
        base = head("tenant")
        slugs = [f"t{i:05d}" for i in range(CFG["T"])]
        log("W1 provision")
        w1 = ms(asyncio.run(provision(pg.url, slugs)))
        w1["one_command_s"] = round(tenantctl(env, "create", "one_command")[0], 3)
        tenantctl(env, "drop", "one_command", "--purge", "--yes")
        result["w1_provision"] = w1
        asyncio.run(seed_all(pg.url, slugs, CFG["PRODUCTS"]))
        settle(pg)
        log("W2 migrate-all")
        sku_dir = write_sku_revision()
        result["w2_migrate_all"] = migrate_all_figures(env, sku_dir, CFG["T"], base)
        settle(pg)
        keys = asyncio.run(keys_for(pg.url, slugs))
        env["BENCH_SERVICE_DATABASE_URL"] = asyncio.run(service_role_url(pg.url))
        result["service_role"] = SERVICE_ROLE
        log("W3/W4 through wrk")
        http = http_workloads(env, keys, slugs)
        result["w3_read"] = http.pop("w3_read")
        result["w4_write"] = {**http.pop("w4_write"), **http.pop("invariants"),
                              "oversell_probe_ok": http.pop("oversell_probe_ok")}  # fmt: skip
        result.update(http)
        log("ceiling")
        result["ceiling"] = ceilings(pg, slugs, sku_dir, base)
        c = result["ceiling"]
        result["fraction_of_ceiling"] = {
            "w1": round(c["w1_psql_per_tenant_ms"] / w1["median_ms"], 3),
            "w2": round(c["w2_psql_total_s"] / result["w2_migrate_all"]["default"]["wall_s"], 3),
            "w3": round(result["w3_read"]["rps"] / c["w3_pgbench_tps"], 3),
            "w4": round(result["w4_write"]["rps"] / c["w4_pgbench_tps"], 3),
        }  # fmt: skip
        result["postgresql"] = asyncio.run(server_settings(pg.url))
        if CFG["SCALE"]:
            result["scale"] = scale(pg, env, sku_dir, base)
    result["machine"]["load_end"] = os.getloadavg()
    result["versions"] = versions()
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "result.json").write_text(json.dumps(result, indent=2))
    print("RESULT " + json.dumps(result))


def versions() -> dict[str, str]:
    from importlib.metadata import version

    names = ("fastapi", "uvicorn", "sqlalchemy", "asyncpg", "pydantic", "alembic")
    found = {n: version(n) for n in names}
    found["wrk"] = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[
        0
    ][:40]
    return found


if __name__ == "__main__":
    main()
