"""W1 (provision) and W2 (migrate-all): tenantsvc against django-tenants on the same machine.

Each on a throwaway PostgreSQL 15 of its own, T tenants (1,000 products each before W2):
- tenantsvc: ``create_tenant`` (``tenantctl create``'s path) T times in one process, one
  ``tenantctl create`` command; then W2's revision (``sku`` and its index) through
  ``tenantctl migrate-all`` at the default concurrency and at 1, and a no-op run
  (``bench.fleet.migrate_all_figures``, as ``bench/run.sh`` measures them);
- django-tenants as its documentation sets a project up (``bench/django_fleet``: the same four
  tables with their constraints and indexes as Django models and their migration, contenttypes
  in the tenant apps): ``Client(...).save()`` and its ``Domain`` T times in one process (the
  save creates the schema and runs the tenant apps' migrations in it), one ``create_tenant``
  command; then the same change as a Django migration through ``migrate_schemas`` with its
  standard executor and its multiprocessing one (2 processes, its default), and a no-op run.

    python -m bench.django_fleet_compare        # T=50
"""

import asyncio
import json
import os
import time
from typing import Any

from bench.ceiling import psql_seconds
from bench.django_compare import django_env, manage
from bench.fleet import (
    migrate_all_figures,
    migrated_cluster,
    ms,
    provision,
    seed_products,
    tenantctl,
    write_sku_revision,
)
from bench.pgcluster import Cluster
from bench.run import calibration, settle
from tenantsvc.tenancy.migrator import head

T = int(os.environ.get("T", 50))
PRODUCTS = 1000


def django_provision(env: dict[str, str], slugs: list[str]) -> list[float]:
    """django-tenants' own path, T times in this process: the tenant's save creates its
    schema and migrates it; then its domain."""
    os.environ.update(env)
    import django

    django.setup()
    from bench.django_app.models import Client, Domain

    times = []
    for slug in slugs:
        started = time.perf_counter()
        client = Client(schema_name=f"dj_{slug}")
        client.save(verbosity=0)
        Domain(domain=slug, tenant=client, is_primary=True).save()
        times.append(time.perf_counter() - started)
    return times


def seed_sql(slugs: list[str]) -> str:
    return "".join(
        f"INSERT INTO dj_{s}.products (name, price_cents, stock, created_at) SELECT "
        f"'product ' || g, 100 + g, 1000, now() FROM generate_series(1, {PRODUCTS}) g;\n"
        for s in slugs
    )


def django_figures(slugs: list[str]) -> dict[str, Any]:
    with Cluster() as pg:
        env = {**django_env(pg.url, tuned=False), "BENCH_DJANGO_FLEET": "1"}
        manage(env, "migrate_schemas", "--shared")
        figures: dict[str, Any] = {"w1_provision": ms(django_provision(env, slugs))}
        figures["w1_provision"]["one_command_s"] = round(manage(
            env, "create_tenant", "--noinput", "--schema_name", "dj_one",
            "--domain-domain", "one", "--domain-is_primary", "True",
        ), 3)  # fmt: skip
        psql_seconds(pg.libpq_url, seed_sql(slugs))
        settle(pg)  # both sides alike: W2's index builds read vacuumed, checkpointed tables
        sku = {**env, "BENCH_DJANGO_FLEET": "sku"}
        w2: dict[str, Any] = {}
        for executor in ("standard", "multiprocessing"):
            wall = manage(sku, "migrate_schemas", "--tenant", "--executor", executor)
            w2[executor] = {"wall_s": round(wall, 3), "tenants_per_s": round((T + 1) / wall, 1)}
            if executor == "standard":  # back, for the next executor
                manage(sku, "migrate_schemas", "--tenant", "fleet_sku", "zero")
        wall = manage(sku, "migrate_schemas", "--tenant")
        w2["noop"] = {"wall_s": round(wall, 3), "tenants_per_s": round((T + 1) / wall, 1)}
        figures["w2_migrate_all"] = w2
    return figures


def tenantsvc_figures(slugs: list[str]) -> dict[str, Any]:
    with migrated_cluster() as (pg, env):
        base = head("tenant")
        figures: dict[str, Any] = {"w1_provision": ms(asyncio.run(provision(pg.url, slugs)))}
        wall, _, _ = tenantctl(env, "create", "one")
        figures["w1_provision"]["one_command_s"] = round(wall, 3)
        tenantctl(env, "drop", "one", "--purge", "--yes")
        asyncio.run(seed_products(pg.url, slugs, PRODUCTS))
        settle(pg)
        figures["w2_migrate_all"] = migrate_all_figures(env, write_sku_revision(), T, base)
    return figures


def main() -> None:
    slugs = [f"t{i:05d}" for i in range(T)]
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"), "T": T, "products": PRODUCTS, "nproc": os.cpu_count(),
        "cpu_mloops_per_s": calibration(),
    }  # fmt: skip
    result["tenantsvc"] = tenantsvc_figures(slugs)
    result["django_tenants"] = django_figures(slugs)
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
