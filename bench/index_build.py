"""W4 through wrk while ``tenantctl migrate-all`` builds an index on big tenants' products, as a
plain ``CREATE INDEX`` and as ``CREATE INDEX CONCURRENTLY`` (tenancy/steps.py).

A plain build holds the table's SHARE lock, so every order (which updates the product's stock)
waits for the build to end; a concurrent one blocks none. Rounds run plain, concurrent,
concurrent, plain (each a new index over other columns), each measuring W4 alone for DURATION
seconds, then again while migrate-all, started 3 s in, builds the index in every tenant.
Reported per round: rps, non-2xx, p99 and the slowest request, before and during, and
migrate-all's wall time.

    python -m bench.index_build        # T=2 PRODUCTS=1000000 DURATION=12

With ``--fleet``: what a concurrent index costs migrate-all itself, over N empty tenants (no
load): whole-command wall time of plain, concurrent, plain, concurrent revisions.

    python -m bench.index_build --fleet        # N=1000
"""

import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

from bench import load
from bench.fleet import migrated_cluster, provision, tenantctl
from bench.live_migration import measure_round, serving
from tenantsvc.tenancy.migrator import EXTRA_VERSIONS_ENV, head
from tests.tenancy.revisions import concurrently, write_revision

T = int(os.environ.get("T", 2))
PRODUCTS = int(os.environ.get("PRODUCTS", 1_000_000))
ROUNDS = (("plain", "name, price_cents"), ("concurrent", "price_cents, name"),
          ("concurrent", "name, stock"), ("plain", "stock, name"))  # fmt: skip


def index_revisions(directory: Path) -> list[str]:
    down, made = head("tenant"), []
    for i, (kind, columns) in enumerate(ROUNDS):
        names = ", ".join(f'"{c}"' for c in columns.split(", "))
        create = f'op.create_index("bench_idx_{i}", "products", [{names}]'
        upgrade = create + ")" if kind == "plain" else concurrently(create)
        write_revision(directory, f"ib{i}", down, f"an index, {kind}", upgrade)
        made.append(down := f"ib{i}")
    return made


def main() -> None:
    rounds = []
    with serving(T, PRODUCTS, index_revisions) as fleet:
        lua = load.script("write", fleet.keys, PRODUCTS, 20, seed=2)
        load.run(fleet.url, lua, 32, 5)  # warm-up
        for revision, (kind, columns) in zip(fleet.revisions, ROUNDS, strict=True):
            measured = measure_round(fleet.url, lua, fleet.migrating, revision)
            rounds.append({"build": kind, "columns": columns, **measured})
            print(json.dumps(rounds[-1]), flush=True)
    print("RESULT " + json.dumps({"T": T, "products": PRODUCTS, "rounds": rounds}))


def fleet() -> None:
    n = int(os.environ.get("N", 1000))
    with migrated_cluster() as (pg, env), tempfile.TemporaryDirectory() as versions:
        revisions = index_revisions(Path(versions))
        asyncio.run(provision(pg.url, [f"t{i:05d}" for i in range(n)]))
        migrating, runs = {**env, EXTRA_VERSIONS_ENV: versions}, []
        for revision, (kind, _) in zip(revisions, ROUNDS, strict=True):
            wall, _, out = tenantctl(migrating, "migrate-all", "--to", revision, "--json")
            runs.append({"build": kind, "wall_s": round(wall, 2),
                         "summary": json.loads(out)["summary"]})  # fmt: skip
            print(json.dumps(runs[-1]), flush=True)
    print("RESULT " + json.dumps({"tenants": n, "runs": runs}))


if __name__ == "__main__":
    fleet() if "--fleet" in sys.argv else main()
