"""Bar chart of requests per second per workload against the database's ceiling.

python -m bench.chart bench/out/result.json bench/chart.png
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main(source: str, target: str) -> None:
    result = json.loads(open(source).read())  # noqa: SIM115
    c, o = result["ceiling"], result["tenancy_overhead"]
    groups = ["W3 read", "W4 write"]
    bars = {
        "tenantsvc": [result["w3_read"]["rps"], result["w4_write"]["rps"]],
        "tenancy bypassed (pinned)": [o["w3_pinned_rps"], o["w4_pinned_rps"]],
        "database ceiling (pgbench)": [c["w3_pgbench_tps"], c["w4_pgbench_tps"]],
    }
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.26
    for i, (label, values) in enumerate(bars.items()):
        xs = [g + (i - 1) * width for g in range(len(groups))]
        drawn = ax.bar(xs, values, width, label=label)
        ax.bar_label(drawn, fmt="%.0f", fontsize=8)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel("requests (transactions) per second")
    cfg = result["config"]
    ax.set_title(f"T={cfg['T']} tenants, {cfg['CONNS']} connections, {cfg['WORKERS']} workers, "
                 f"{result['date']}")  # fmt: skip
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(target, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
