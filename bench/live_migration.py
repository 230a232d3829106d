"""W3 and W4 through wrk while ``tenantctl migrate-all`` changes what their statements return.

Each round measures a workload for DURATION seconds, then again while, 3 s in, migrate-all
applies a revision that widens ``products.name`` and ``users.name`` and adds a column, across
all T tenants (a throwaway PostgreSQL 15 and the recommended service settings, as in
``bench/run.sh``). Rounds alternate read, write, read, write, one revision each, so a read
round also meets what the write round's migration left stale. Reported per round: rps and
non-2xx before and during, p99, and migrate-all's wall time and lock retries.

    python -m bench.live_migration        # T=50 PRODUCTS=1000 DURATION=12
"""

import asyncio
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import load
from bench.fleet import migrated_cluster, provision, tenantctl
from bench.run import keys_for, seed_all, service, service_env
from tenantsvc.tenancy.migrator import EXTRA_VERSIONS_ENV, head
from tests.tenancy.revisions import write_revision

T = int(os.environ.get("T", 50))
PRODUCTS = int(os.environ.get("PRODUCTS", 1000))
DURATION = int(os.environ.get("DURATION", 12))
WIDTHS = (300, 400, 500, 600)


def widening_revisions(directory: Path) -> list[str]:
    down, made = head("tenant"), []
    for width in WIDTHS:
        upgrade = (f'op.alter_column("products", "name", type_=sa.String({width}))\n'
                   f'op.alter_column("users", "name", type_=sa.String({width}))\n'
                   f'op.add_column("products", sa.Column("note_{width}", sa.Text))')  # fmt: skip
        write_revision(directory, f"live{width}", down, "wider names, a new column", upgrade)
        made.append(down := f"live{width}")
    return made


def measure_round(url: str, lua: Path, env: dict[str, str], revision: str) -> dict[str, Any]:
    """The workload alone, then again while migrate-all runs (started 3 s in)."""
    before = load.run(url, lua, 32, DURATION)
    migrated: dict[str, Any] = {}

    def migrate() -> None:
        time.sleep(3)
        wall, _, out = tenantctl(env, "migrate-all", "--to", revision, "--json")
        migrated.update(wall_s=round(wall, 2), summary=json.loads(out)["summary"])

    job = threading.Thread(target=migrate)
    job.start()
    during = load.run(url, lua, 32, DURATION)
    job.join()
    return {"revision": revision, "migrate_all": migrated,
            **{name: {"rps": round(r.rps), "non2xx": r.non2xx, "p99_ms": r.p99_ms,
                      "max_ms": r.max_ms}
               for name, r in (("before", before), ("during", during))}}  # fmt: skip


@dataclass
class Serving:
    url: str
    keys: list[tuple[str, str]]
    revisions: list[str]
    migrating: dict[str, str]  # tenantctl's environment, the revisions found


@contextmanager
def serving(
    tenants: int, products: int, revisions: Callable[[Path], list[str]]
) -> Iterator[Serving]:
    """A throwaway cluster of seeded tenants, the service on it (2 workers), and the revisions
    written by ``revisions`` into a directory that only ``migrating`` sees."""
    with migrated_cluster() as (pg, env), tempfile.TemporaryDirectory() as versions:
        made = revisions(Path(versions))
        slugs = [f"t{i:05d}" for i in range(tenants)]
        asyncio.run(provision(pg.url, slugs))
        asyncio.run(seed_all(pg.url, slugs, products))
        keys = asyncio.run(keys_for(pg.url, slugs))
        with service(service_env(env), 2) as url:
            yield Serving(url, keys, made, {**env, EXTRA_VERSIONS_ENV: versions})


def main() -> None:
    rounds = []
    with serving(T, PRODUCTS, widening_revisions) as fleet:
        url, revisions, migrating = fleet.url, fleet.revisions, fleet.migrating
        scripts = {m: load.script(m, fleet.keys, PRODUCTS, 20, seed=s)
                   for m, s in (("read", 1), ("write", 2))}  # fmt: skip
        for lua in scripts.values():
            load.run(url, lua, 32, 5)  # warm-up
        for revision, name in zip(revisions, ["read", "write"] * 2, strict=True):
            measured = measure_round(url, scripts[name], migrating, revision)
            rounds.append({"workload": name, **measured})
            print(json.dumps(rounds[-1]), flush=True)
    print("RESULT " + json.dumps({"T": T, "products": PRODUCTS, "rounds": rounds}))


if __name__ == "__main__":
    main()
