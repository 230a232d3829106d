"""Fleet benchmark (issue 4 figures; W1 and W2 of the full bench): provisioning and
migrate-all on a throwaway PostgreSQL 15, timed as whole commands where the issue says so.

    python -m bench.fleet            # prints a JSON object as its last line
    SIZES=50,100,1000 ROWS=1000 python -m bench.fleet
"""

import asyncio
import atexit
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.pgcluster import Cluster
from tenantsvc.db.engine import create_engine
from tenantsvc.settings import Settings
from tenantsvc.tenancy.migrator import EXTRA_VERSIONS_ENV, head
from tenantsvc.tenancy.provisioning import create_tenant
from tests.tenancy import revisions as sku

ROOT = Path(__file__).resolve().parents[1]


def write_sku_revision() -> str:
    """A directory holding the benchmark's revision (products.sku and its index), chained onto
    the repository's head; the repository's migrations stay untouched. Removed at exit."""
    directory = tempfile.mkdtemp(prefix="tenantsvc-bench-rev-")
    atexit.register(shutil.rmtree, directory, True)
    sku.write_sku_revision(Path(directory), "bench_sku")
    return directory


def tenantctl(env: dict[str, str], *args: str) -> tuple[float, int, str]:
    """Runs one tenantctl command: (wall seconds incl. process start, its peak RSS KiB, stdout)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", *args], env=env, cwd=ROOT, stdout=out, stderr=err
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"tenantctl {' '.join(args)} failed: {err.read().strip()[-500:]}")
        return wall, usage.ru_maxrss, out.read()


@contextmanager
def migrated_cluster() -> Iterator[tuple[Cluster, dict[str, str]]]:
    """A throwaway cluster with the shared track migrated, and tenantctl's environment for it
    (the repository's revisions only: a benchmark's own come in through EXTRA_VERSIONS_ENV)."""
    with Cluster() as pg:
        env = {**os.environ, "TENANTSVC_DATABASE_URL": pg.url}
        env.pop(EXTRA_VERSIONS_ENV, None)
        tenantctl(env, "migrate-all")
        yield pg, env


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def provision(url: str, slugs: list[str]) -> list[float]:
    """Tenants created one after another in one process, through tenantctl create's path."""
    engine = create_engine(Settings(database_url=url, pool_size=2, max_overflow=0))
    times = []
    try:
        for slug in slugs:
            started = time.perf_counter()
            await create_tenant(engine, slug)
            times.append(time.perf_counter() - started)
    finally:
        await engine.dispose()
    return times


async def seed_products(url: str, slugs: list[str], rows: int) -> None:
    engine = create_engine(Settings(database_url=url, pool_size=4, max_overflow=0))
    try:
        for slug in slugs:
            async with engine.begin() as conn:
                await conn.execute(text(
                    f"INSERT INTO tenant_{slug}.products (name, price_cents, stock) "
                    f"SELECT 'product ' || g, 100 + g, 1000 FROM generate_series(1, {rows}) g"
                ))  # fmt: skip
    finally:
        await engine.dispose()


def ms(seconds: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(seconds) * 1000, 2),
        "p95_ms": round(pct(seconds, 0.95) * 1000, 2),
        "total_s": round(sum(seconds), 3),
    }


def migrate_all_figures(env: dict[str, str], rev_dir: str, size: int, base: str) -> dict[str, Any]:
    with_rev = {**env, EXTRA_VERSIONS_ENV: rev_dir}
    figures: dict[str, Any] = {}
    wall, rss, _ = tenantctl(with_rev, "migrate-all")
    figures["default"] = {"wall_s": round(wall, 3), "tenants_per_s": round(size / wall, 1),
                          "peak_rss_mib": round(rss / 1024, 1)}  # fmt: skip
    wall, _, _ = tenantctl(with_rev, "migrate-all")
    figures["noop"] = {"wall_s": round(wall, 3), "tenants_per_s": round(size / wall, 1)}
    wall, _, _ = tenantctl(with_rev, "migrate", "t00000")
    figures["noop_one_tenant"] = {"wall_s": round(wall, 3)}
    tenantctl(with_rev, "migrate-all", "--to", base)
    wall, _, _ = tenantctl(with_rev, "migrate-all", "--concurrency", "1")
    figures["concurrency_1"] = {"wall_s": round(wall, 3), "tenants_per_s": round(size / wall, 1)}
    _, _, out = tenantctl(with_rev, "status", "--json")
    states = json.loads(out)["tenants"]
    figures["all_migrated"] = all(s["at_head"] and s["drift"] is False for s in states)
    tenantctl(with_rev, "migrate-all", "--to", base)  # back, so growth creates base tenants
    return figures


def main() -> None:
    sizes = [int(s) for s in os.environ.get("SIZES", "50,100,1000").split(",")]
    rows = int(os.environ.get("ROWS", "1000"))
    rev_dir = write_sku_revision()
    result: dict[str, Any] = {"load_start": os.getloadavg(), "nproc": os.cpu_count(),
                              "rows_per_tenant": rows, "sizes": {}}  # fmt: skip
    with migrated_cluster() as (pg, env):
        base = head("tenant")
        existing = 0
        for size in sizes:
            slugs = [f"t{i:05d}" for i in range(existing, size)]
            times = asyncio.run(provision(pg.url, slugs))
            asyncio.run(seed_products(pg.url, slugs, rows))
            existing = size
            last = times[-50:]
            entry: dict[str, Any] = {"provision_last_50": ms(last)}
            wall, _, _ = tenantctl(env, "create", f"one_{size}")
            tenantctl(env, "drop", f"one_{size}", "--purge", "--yes")
            entry["one_command_create_s"] = round(wall, 3)
            entry["migrate_all"] = migrate_all_figures(env, rev_dir, size, base)
            result["sizes"][str(size)] = entry
            print(json.dumps({str(size): entry}), file=sys.stderr)
    result["load_end"] = os.getloadavg()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
