"""Instructions per request, counted by callgrind: what tenancy costs the service and the
server, free of the machine's noise.

The rps ratios of ``bench/run.sh`` swing by more than the gap they measure on this machine
(bench/README.md). Instructions executed do not: callgrind counts them, whatever else the
machine is doing. Once the tenants are loaded, the cluster is restarted with every PostgreSQL
process under ``valgrind --tool=callgrind``; then:

- ``apps`` (the default): one worker of each app (the tenant app over T tenants, the same app
  with every request on one tenant, the pinned app) under callgrind too, W3 and W4 driven
  through wrk as the benchmark does (fewer connections: everything runs some 50 times slower),
  and the instructions counted during each run divided by the requests it answered, for the
  service's process and for the server's backends;
- ``transactions``: one W3 read transaction over one connection, sent the way the service
  sends it and in variants (the pinned app's, without the role, without the search_path),
  and the same for a tenant made after EXTRA_ROLES more roles joined the serving group.

    bench/run.sh instructions [transactions]
    # knobs: T=50 PRODUCTS=1000 USERS=20 CONNS=8 DURATION=40 WARMUP=20 EXTRA_ROLES=10000
    # apps only: W4=0 counts W3 alone; CACHE_SIM=1 adds callgrind's simulated cache misses
"""

import asyncio
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg

from bench import ceiling, load
from bench.fleet import migrated_cluster, provision
from bench.pgcluster import BIN_DIR, Cluster
from bench.run import (
    calibration,
    keys_for,
    log,
    seed_all,
    service,
    service_env,
    service_processes,
    service_role_url,
    settle,
)
from tenantsvc.db.session import BEGIN_HOT, hot_begin_sql, local_role_sql
from tenantsvc.db.statements import tenant_prefix
from tenantsvc.products.queries import LIVE_PAGE
from tenantsvc.tenancy.ddl import identifier, literal
from tenantsvc.tenancy.roles import SERVE_GROUP

KNOBS = {
    "T": 50,
    "PRODUCTS": 1000,
    "USERS": 20,
    "CONNS": 8,
    "DURATION": 40,
    "WARMUP": 20,
    "EXTRA_ROLES": 10000,
    "W4": 1,  # apps: W4 as well as W3
    "CACHE_SIM": 0,  # apps: callgrind's cache simulation too (cache misses per request)
}
LAST = "tlast"  # transactions: the tenant made after the extra roles
CFG = {k: int(os.environ.get(k, v)) for k, v in KNOBS.items()}
_THREAD_LINE = re.compile(r"^\s+Th \d+\s+([\d, ]+)$", re.M)
_EVENTS = re.compile(r"^events: (.+)$", re.M)
_SUMMARY = re.compile(r"^(?:totals|summary): (.+)$", re.M)
CALLGRIND = ["valgrind", "--tool=callgrind", *(["--cache-sim=yes"] if CFG["CACHE_SIM"] else [])]


def service_events(pid: int) -> dict[str, int]:
    """What the service counted since it was last zeroed (instructions, ``Ir``, and with the
    cache simulation its misses), summed over its threads."""
    done = subprocess.run(["callgrind_control", "-e", str(pid)], capture_output=True,
                          text=True, check=True)  # fmt: skip
    names = re.search(r"Totals:(.*)$", done.stdout, re.M)
    totals: Counter[str] = Counter()
    for line in _THREAD_LINE.findall(done.stdout):
        values = [int(v.replace(",", "")) for v in line.split()]
        totals.update(dict(zip(names.group(1).split() if names else [], values, strict=False)))
    return totals


def dump_events(text: str) -> dict[str, int]:
    """A callgrind dump's totals, by event."""
    names, values = _EVENTS.search(text), _SUMMARY.search(text)
    if names is None or values is None:
        return {}
    return dict(zip(names.group(1).split(), map(int, values.group(1).split()), strict=False))


def settled_dumps(dumps: Path) -> set[Path]:
    """The backends' dumps, once no more have appeared for three seconds (a backend writes its
    own as it exits, which under valgrind takes a while)."""
    settled, seen = 0, -1
    while settled < 3:
        files = set(dumps.iterdir())
        settled = settled + 1 if len(files) == seen else 0
        seen = len(files)
        time.sleep(1)
    return files


def server_events(dumps: Path, before: set[Path]) -> tuple[dict[str, int], int]:
    """What the backends that exited since ``before`` was listed counted, by event; and how
    many backends they were."""
    counted = [dump_events(f.read_text(errors="replace")) for f in settled_dumps(dumps) - before]
    counted = [c for c in counted if c]
    totals: Counter[str] = Counter()
    for events in counted:
        totals.update(events)  # keeps an event that counted nothing, unlike a sum of Counters
    return totals, len(counted)


def measure(
    env: dict[str, str], target: str, script: Path, pg: Cluster, dumps: Path
) -> dict[str, Any]:
    """One service of ``target``, warmed up, then one wrk run of ``script``: requests, non-2xx,
    and the instructions per request of the service and of the server's backends.

    The counters start together: ``callgrind_control -z`` zeroes the service's, and
    ``pg_reload_conf()`` makes each backend zero its own at its next command
    (``--zero-before=ProcessConfigFile``, whose own cost is not counted). A backend's count
    is written when it exits, so the service is stopped (closing its pool) before the
    backends' counts are read."""
    prefix = [*CALLGRIND, "--callgrind-out-file=/dev/null"]
    with service(env, 1, target, prefix, ready_seconds=600) as url:
        pid = service_processes(url)[0].pid  # valgrind runs the worker in its own process
        load.run(url, script, CFG["CONNS"], CFG["WARMUP"])  # every tenant's statements prepared
        ceiling.psql_seconds(pg.libpq_url, "SELECT pg_reload_conf();")
        before = settled_dumps(dumps)  # psql's own backend has exited and been counted out
        subprocess.run(["callgrind_control", "-z", str(pid)], capture_output=True, check=True)
        run = load.run(url, script, CFG["CONNS"], CFG["DURATION"])
        on_service = service_events(pid)
    on_server, backends = server_events(dumps, before)
    n = max(run.requests, 1)
    found: dict[str, Any] = {
        "requests": run.requests, "non2xx": run.non2xx, "rps": round(run.rps, 1),
        "service_per_request": round(on_service["Ir"] / n),
        "server_per_request": round(on_server["Ir"] / n), "backends": backends}  # fmt: skip
    if CFG["CACHE_SIM"]:  # the simulated misses: first level (I1, D1) and last level (IL, DL)
        for side, events in (("service", on_service), ("server", on_server)):
            found[f"{side}_misses_per_request"] = {
                k: round(v / n, 1) for k, v in events.items() if k.endswith(("mr", "mw"))
            }
    return found


def server_under_callgrind(pg: Cluster) -> Path:
    """Restart the cluster with every PostgreSQL process under callgrind; where the backends'
    counts are written when they exit."""
    dumps = pg.root / "callgrind"
    dumps.mkdir()
    if os.geteuid() == 0:  # the server runs as postgres (pgcluster.py)
        shutil.chown(dumps, "postgres")
    wrapper = pg.root / "postgres-under-callgrind"
    wrapper.write_text(
        f"#!/bin/sh\nexec {' '.join(CALLGRIND)} -q --zero-before=ProcessConfigFile "
        "--toggle-collect=ProcessConfigFile --collect-atstart=yes "
        f'--callgrind-out-file={dumps}/cg.%p {BIN_DIR / "postgres"} "$@"\n'
    )
    wrapper.chmod(0o755)
    pg.restart(wrapper)
    return dumps


WORKLOADS = [("w3", "read", 1), ("w4", "write", 2)][: 2 if CFG["W4"] else 1]


def apps(pg: Cluster, env: dict[str, str], slugs: list[str], dumps: Path) -> dict[str, Any]:
    """W3 and W4 through each app: instructions per request, service and server."""
    keys = asyncio.run(keys_for(pg.url, slugs))
    args = (CFG["PRODUCTS"], CFG["USERS"])
    pinned_env = {**service_env(env), "TENANTSVC_DATABASE_URL": env["TENANTSVC_DATABASE_URL"],
                  "BENCH_PIN_SCHEMA": f"tenant_{slugs[0]}"}  # fmt: skip
    served = {"tenant": (service_env(env), "tenantsvc.main:app", keys),
              "same_tenant": (service_env(env), "tenantsvc.main:app", keys[:1]),
              "pinned": (pinned_env, "bench.pinned_app:app", keys)}  # fmt: skip
    result: dict[str, Any] = {}
    for name, (app_env, target, tenants) in served.items():
        result[name] = {}
        for w, mode, seed in WORKLOADS:
            log(f"{name} {w}")
            script = load.script(mode, tenants, *args, seed=seed)
            result[name][w] = measure(app_env, target, script, pg, dumps)
    for w, _, _ in WORKLOADS:
        for side in ("service", "server"):
            base = result["pinned"][w][f"{side}_per_request"]
            result[f"{w}_{side}_over_pinned"] = {
                k: round(result[k][w][f"{side}_per_request"] / base, 3)
                for k in ("tenant", "same_tenant")
            }
    return result


async def transaction_cost(url: str, owner: str, dumps: Path, tx: tuple[str, str, str]) -> int:
    """The server's instructions for one W3 read transaction sent as ``tx`` (session setup,
    BEGIN message, query) over one connection: the difference between 900 and 300
    transactions, each count taken from a backend of its own, warmed up and zeroed."""
    few, many = [await _backend_count(url, owner, dumps, tx, n) for n in (300, 900)]
    return round((many - few) / 600)


async def _backend_count(
    url: str, owner: str, dumps: Path, tx: tuple[str, str, str], n: int
) -> int:
    setup, begin, query = tx
    after = random.Random(1)
    conn = await asyncpg.connect(url)
    if setup:
        await conn.execute(setup)
    for i in range(50 + n):
        if i == 50:  # prepared, planned, the role's memberships cached: zero this backend
            admin = await asyncpg.connect(owner)
            await admin.execute("SELECT pg_reload_conf()")
            await admin.close()
            pid = await conn.fetchval("SELECT pg_backend_pid()")
        await conn.execute(begin)
        await conn.fetch(query, after.randrange(CFG["PRODUCTS"] - 20), 20)
        await conn.execute("COMMIT")
    await conn.close()
    return await asyncio.to_thread(_exit_count, dumps / f"cg.{pid}")


def _exit_count(dump: Path) -> int:
    """The count a backend wrote when it exited."""
    for _ in range(600):
        found = dump.exists() and dump_events(dump.read_text(errors="replace")).get("Ir")
        if found:
            return found
        time.sleep(0.2)
    raise TimeoutError(f"no dump at {dump}")


async def transactions(pg: Cluster, slugs: list[str], dumps: Path) -> dict[str, Any]:
    """One tenant's W3 read transaction, the way the service sends it and its variants: what
    each part of the tenancy costs the server, and the role's cost as the fleet grows."""
    owner = pg.libpq_url
    served = (await service_role_url(pg.url)).replace("postgresql+asyncpg", "postgresql")
    first, last = await _roles(owner, [slugs[0], slugs[-1]])
    schema = f"tenant_{slugs[0]}"
    qualified = LIVE_PAGE.replace("FROM products", f"FROM {identifier(schema)}.products")
    variants = {
        "pinned: search_path per session, as the owner (the pinned app)":
            (owner, (f"SET search_path TO {schema}", BEGIN_HOT, LIVE_PAGE)),
        "pinned, as the tenant's role (SET ROLE per session)":
            (served, (f"SET search_path TO {schema}; SET ROLE {identifier(first)}", BEGIN_HOT,
                      LIVE_PAGE)),
        "search_path per transaction, as the owner": (owner, as_served(schema, None)),
        "search_path and role per transaction (as served)": (served, as_served(schema, first)),
        "role per transaction, schema-qualified text, no search_path":
            (served, ("", BEGIN_HOT + local_role_sql(first), qualified)),
    }  # fmt: skip
    result = {}
    for name, (url, tx) in variants.items():
        log(name)
        result[name] = await transaction_cost(url, owner, dumps, tx)
    label = f"as served, the last tenant, {CFG['EXTRA_ROLES']} more roles in the serving group"
    log(label)
    tx = as_served(f"tenant_{slugs[-1]}", last)
    result[label] = await transaction_cost(served, owner, dumps, tx)
    return result


def as_served(schema: str, role: str | None) -> tuple[str, str, str]:
    """The hot read's transaction as the service sends it: no session setup, BEGIN with the
    tenant's search_path (and role), the tenant's own statement text."""
    return "", hot_begin_sql(schema, role), tenant_prefix(schema) + LIVE_PAGE


async def more_roles(pg: Cluster, count: int) -> None:
    """``count`` more roles in the serving group, as many tenants' roles would be, then one
    more tenant (its role the last of the group's members)."""
    conn = await asyncpg.connect(pg.libpq_url)
    try:
        group = await conn.fetchval(f"SELECT {SERVE_GROUP}")
        await conn.execute(f"""DO $$ BEGIN FOR i IN 1..{count} LOOP
            EXECUTE format('CREATE ROLE bench_extra_%s NOLOGIN', i);
            EXECUTE format('GRANT bench_extra_%s TO %I', i, {literal(group)});
        END LOOP; END $$""")  # fmt: skip
    finally:
        await conn.close()
    await provision(pg.url, [LAST])
    await seed_all(pg.url, [LAST], CFG["PRODUCTS"])


async def _roles(owner: str, slugs: list[str]) -> list[str]:
    conn = await asyncpg.connect(owner)
    try:
        rows = await conn.fetch("SELECT slug, role_name FROM tenantsvc.tenants "
                                "WHERE slug = ANY($1::text[])", slugs)  # fmt: skip
    finally:
        await conn.close()
    found = {r["slug"]: r["role_name"] for r in rows}
    return [found[s] for s in slugs]


def main() -> None:
    """``python -m bench.instructions`` (the apps) or ``... transactions``."""
    mode = sys.argv[1] if len(sys.argv) > 1 else "apps"
    if mode not in ("apps", "transactions") or len(sys.argv) > 2:
        sys.exit("usage: bench/run.sh instructions [apps | transactions]")
    result: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "mode": mode, "config": CFG,
                              "cpu_mloops_per_s": calibration()}  # fmt: skip
    with migrated_cluster() as (pg, env):
        slugs = [f"t{i:05d}" for i in range(CFG["T"])]
        log(f"provisioning and seeding {len(slugs)} tenants")
        asyncio.run(provision(pg.url, slugs))
        asyncio.run(seed_all(pg.url, slugs, CFG["PRODUCTS"]))
        settle(pg)
        env["BENCH_SERVICE_DATABASE_URL"] = asyncio.run(service_role_url(pg.url))
        if mode == "transactions":
            asyncio.run(more_roles(pg, CFG["EXTRA_ROLES"]))
            settle(pg)
        log("restarting the cluster under callgrind")
        dumps = server_under_callgrind(pg)
        if mode == "transactions":
            slugs.append(LAST)
            result["server_per_transaction"] = asyncio.run(transactions(pg, slugs, dumps))
        else:
            result.update(apps(pg, env, slugs, dumps))
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
