"""tenantsvc against django-tenants on the same machine, data and load.

One throwaway PostgreSQL 15 with T tenants provisioned and seeded by tenantsvc (PRODUCTS
products, 20 users each), served at once by:
- tenantsvc as ``bench/run.sh`` runs it (the service role, 2 workers, pool 20 + 10);
- the same endpoints written the usual django-tenants way (``bench/django_app``) under
  gunicorn's sync workers, on the very same tables: ``default`` is Django's and
  django-tenants' defaults (a connection per request, ``SET search_path`` before each query's
  cursor) with nproc workers; ``tuned`` has persistent connections
  (``CONN_MAX_AGE=None``), django-tenants' ``TENANT_LIMIT_SET_CALLS`` and gunicorn's advice of
  2 x nproc + 1 workers.

W3 and W4 through wrk with the same scripts (32 connections, the tenants round-robin, the same
tenant header and key; the Django app does not check the key, so it does less work than
tenantsvc), WARMUP s each, then REPEATS interleaved rounds of DURATION s. Afterwards, per
tenant, live stock + units sold = live products x STOCK (both apps' orders together), and the
oversell probe against each app: 64 concurrent 1-unit orders for a 5-unit product must give
five 201s and stock 0.

    python -m bench.django_compare        # T=50 PRODUCTS=1000 DURATION=15 REPEATS=3
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from sqlalchemy import make_url

from bench import load
from bench.fleet import ROOT, migrated_cluster, provision
from bench.run import (
    CFG,
    PER_REQUEST,
    calibration,
    invariants,
    keys_for,
    oversell_probe,
    rounds,
    seed_all,
    service,
    service_env,
    service_role_url,
    settle,
)
from tenantsvc.testing.app import wait_for_http
from tenantsvc.testing.postgres import free_port

NPROC = os.cpu_count() or 1
DJANGO = {  # name: (tuned, gunicorn's options)
    "django_tenants_default": (False, ["--workers", str(NPROC)]),
    "django_tenants_tuned": (True, ["--workers", str(2 * NPROC + 1)]),
}


def django_env(database_url: str, tuned: bool) -> dict[str, str]:
    dsn = make_url(database_url).set(drivername="postgresql")
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.django_app.settings",
            "BENCH_DJANGO_DSN": dsn.render_as_string(hide_password=False),
            "BENCH_DJANGO_TUNED": "1" if tuned else "0", "PYTHONPATH": str(ROOT)}  # fmt: skip


def manage(env: dict[str, str], *args: str) -> float:
    """One Django management command, whole (process start included): its wall seconds."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "django", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"django {' '.join(args)}: {done.stderr.strip()[-1500:]}")
    return time.perf_counter() - started


def register(database_url: str, slugs: list[str]) -> None:
    """django-tenants' own registry (its tenant and domain tables, in the public schema, made
    by its ``migrate_schemas --shared``) for the schemas tenantsvc made: a domain per tenant,
    named by the ``X-Tenant-ID`` value."""
    env = django_env(database_url, tuned=False)
    manage(env, "migrate_schemas", "--shared")
    os.environ.update(env)
    import django

    django.setup()
    from django.db import connection

    from bench.django_app.models import Client, Domain

    clients = Client.objects.bulk_create(Client(schema_name=f"tenant_{s}") for s in slugs)
    Domain.objects.bulk_create(
        Domain(domain=s, tenant=c, is_primary=True) for s, c in zip(slugs, clients, strict=True)
    )
    connection.close()


@contextmanager
def gunicorn(env: dict[str, str], options: list[str], tenant: str) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "bench.django_app.wsgi:application",
               *options, "--bind", f"127.0.0.1:{port}",
               "--backlog", "2048", "--log-level", "warning"]  # fmt: skip
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                               start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        # django-tenants answers 404 without a tenant: the readiness probe names one.
        wait_for_http(f"{url}/products?limit=1", process, headers={"X-Tenant-ID": tenant})
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def main() -> None:
    knobs = ("T", "PRODUCTS", "CONNS", "DURATION", "WARMUP", "REPEATS")
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"), "nproc": NPROC, "cpu_mloops_per_s": calibration(),
        "load_start": os.getloadavg(), "config": {k: CFG[k] for k in knobs},
    }  # fmt: skip
    slugs = [f"t{i:05d}" for i in range(CFG["T"])]
    with migrated_cluster() as (pg, env):
        asyncio.run(provision(pg.url, slugs))
        asyncio.run(seed_all(pg.url, slugs, CFG["PRODUCTS"]))
        keys = asyncio.run(keys_for(pg.url, slugs))
        register(pg.url, slugs)
        settle(pg)
        env["BENCH_SERVICE_DATABASE_URL"] = asyncio.run(service_role_url(pg.url))
        scripts = [load.script(m, keys, CFG["PRODUCTS"], CFG["USERS"], seed=s)
                   for m, s in (("read", 1), ("write", 2))]  # fmt: skip
        with ExitStack() as serving:
            tenantsvc = serving.enter_context(service(service_env(env), NPROC))
            apps = {"tenantsvc": tenantsvc}
            for name, (tuned, options) in DJANGO.items():
                django_app = gunicorn(django_env(pg.url, tuned), options, slugs[0])
                apps[name] = serving.enter_context(django_app)
            runs = [(url, lua) for url in apps.values() for lua in scripts]
            measured = rounds(runs, CFG["REPEATS"])
            for i, name in enumerate(apps):
                result[name] = {"w3_read": measured[2 * i], "w4_write": measured[2 * i + 1]}
            # Before the probes, whose 5-unit products are outside the invariant's arithmetic.
            result["invariants"] = asyncio.run(invariants(pg.url, slugs))
            slug, key = keys[0]
            result["oversell_probe_ok"] = {
                name: asyncio.run(oversell_probe(tenantsvc, slug, key, orders_at=url))
                for name, url in apps.items()
            }
    workloads = ("w3_read", "w4_write")
    for w in workloads:  # its backends live one request: gone before they are counted
        for measure in PER_REQUEST:
            result["django_tenants_default"][w][measure]["postgres"] = None
    for name, (_, options) in DJANGO.items():
        result[name]["gunicorn"] = " ".join(options)
        result[f"tenantsvc_over_{name}"] = {
            w: round(result["tenantsvc"][w]["rps"] / result[name][w]["rps"], 2) for w in workloads
        }
    result["load_end"] = os.getloadavg()
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "django_compare.json").write_text(json.dumps(result, indent=2))
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
