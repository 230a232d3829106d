"""``tenantctl export`` and ``tenantctl import`` of one tenant of PRODUCTS products, as whole
commands (process start included), twice: wall time, peak RSS and the file's size; and the
export with ``--hold-writes`` (the tenant's tables locked against writes first).

    python -m bench.dumps        # PRODUCTS=1000000
"""

import asyncio
import json
import os
import tempfile
from pathlib import Path

from bench.fleet import migrated_cluster, provision, tenantctl
from bench.run import seed_all

PRODUCTS = int(os.environ.get("PRODUCTS", 1_000_000))


def main() -> None:
    runs = []
    with migrated_cluster() as (pg, env), tempfile.TemporaryDirectory() as work:
        asyncio.run(provision(pg.url, ["big"]))
        asyncio.run(seed_all(pg.url, ["big"], PRODUCTS))
        for i in range(2):
            file = Path(work) / f"big{i}.tar"
            export_s, export_kib, out = tenantctl(env, "export", "big", str(file), "--json")
            import_s, import_kib, _ = tenantctl(env, "import", str(file), f"copy{i}", "--json")
            held = Path(work) / f"held{i}.tar"
            held_s, _, _ = tenantctl(env, "export", "big", str(held), "--hold-writes", "--json")
            rss = {"export": export_kib // 1024, "import": import_kib // 1024}
            runs.append({"export_s": round(export_s, 2), "import_s": round(import_s, 2),
                         "held_export_s": round(held_s, 2),
                         "file_mib": round(file.stat().st_size / 2**20, 1),
                         "peak_rss_mib": rss, "rows": json.loads(out)["rows"]})  # fmt: skip
            print(json.dumps(runs[-1]), flush=True)
    print("RESULT " + json.dumps({"products": PRODUCTS, "runs": runs}))


if __name__ == "__main__":
    main()
