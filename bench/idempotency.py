"""What an Idempotency-Key costs on POST /orders, and what a replay costs.

W4 as ``bench/run.sh`` runs it (T tenants round-robin, 32 connections, 2 workers, a throwaway
PostgreSQL 15), in three forms interleaved over REPEATS rounds: no key; a new key on every
order (each order also claims and stores its key); and one of 100 keys per tenant, each
always with the same body (after the first of each, every request is a replay). Reported:
medians of rps, p50 and p99, non-2xx, and the keyed and replay rates over the plain one.
Checked: over each replay round, the orders placed equal the keys newly stored (a replay
places nothing); afterwards, per tenant, live stock + units sold = live products x STOCK.

    python -m bench.idempotency        # T=50 PRODUCTS=1000 DURATION=10 REPEATS=3
"""

import asyncio
import json
import os
import statistics
from typing import Any

from sqlalchemy import text

from bench import load
from bench.live_migration import serving
from bench.run import db_settings, invariants
from tenantsvc.db.engine import create_engine

T = int(os.environ.get("T", 50))
PRODUCTS = int(os.environ.get("PRODUCTS", 1000))
DURATION = int(os.environ.get("DURATION", 10))
REPEATS = int(os.environ.get("REPEATS", 3))
MODES = ("write", "keyed", "replay")


async def counts(url: str, slugs: list[str]) -> tuple[int, int]:
    """Orders, and keys with an answer stored, over all tenants."""
    engine = create_engine(db_settings(url))
    orders = keys = 0
    try:
        async with engine.connect() as conn:
            for slug in slugs:
                row = (await conn.execute(text(
                    f"SELECT (SELECT count(*) FROM tenant_{slug}.orders), "
                    f"(SELECT count(*) FROM tenant_{slug}.idempotency_keys WHERE status = 201)"
                ))).one()  # fmt: skip
                orders, keys = orders + row[0], keys + row[1]
    finally:
        await engine.dispose()
    return orders, keys


def main() -> None:
    runs: dict[str, list[load.WrkRun]] = {m: [] for m in MODES}
    with serving(T, PRODUCTS, lambda _: []) as fleet:
        scripts = {m: load.script(m, fleet.keys, PRODUCTS, 20, seed=i + 2)
                   for i, m in enumerate(MODES)}  # fmt: skip
        for lua in scripts.values():
            load.run(fleet.url, lua, 32, 5)  # warm-up
        url = fleet.migrating["TENANTSVC_DATABASE_URL"]
        slugs = [slug for slug, _ in fleet.keys]
        placed_once = []
        for _ in range(REPEATS):
            for mode in MODES:
                before = asyncio.run(counts(url, slugs))
                runs[mode].append(load.run(fleet.url, scripts[mode], 32, DURATION))
                after = asyncio.run(counts(url, slugs))
                if mode == "replay":  # each new order came with a new key, and no other
                    placed_once.append(after[0] - before[0] == after[1] - before[1])
                print(mode, round(runs[mode][-1].rps), after, flush=True)
        checked = asyncio.run(invariants(url, slugs))
    result: dict[str, Any] = {"T": T, "products": PRODUCTS, "duration_s": DURATION}
    for mode, measured in runs.items():
        result[mode] = {"rps": round(statistics.median(r.rps for r in measured)),
                        "rps_each_run": [round(r.rps) for r in measured],
                        "p50_ms": statistics.median(r.p50_ms for r in measured),
                        "p99_ms": statistics.median(r.p99_ms for r in measured),
                        "non2xx": sum(r.non2xx for r in measured)}  # fmt: skip
    for mode in ("keyed", "replay"):
        result[f"{mode}_over_plain"] = round(result[mode]["rps"] / result["write"]["rps"], 3)
    result["invariants"] = checked
    result["replays_placed_nothing"] = all(placed_once)
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
