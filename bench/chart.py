"""Bar charts of requests per second: per workload against the database's ceiling (a
``bench.run`` result), or against django-tenants (``bench.django_compare`` results).

python -m bench.chart bench/out/result.json bench/chart.png
python -m bench.chart --django bench/results/<date>-django-compare-t50.json \
    bench/results/<date>-django-compare-t1000.json bench/django_compare.png
"""

import json
import sys
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main(source: str, target: str) -> None:
    result = json.loads(open(source).read())  # noqa: SIM115
    scale = result.get("scale")
    fig, axes = plt.subplots(1, 2 if scale else 1, figsize=(13 if scale else 8, 4.5),
                             squeeze=False, width_ratios=[3, 2] if scale else None)  # fmt: skip
    workloads(axes[0][0], result)
    if scale:
        tenants(axes[0][1], result)
    fig.tight_layout()
    fig.savefig(target, dpi=110)


def workloads(ax: Any, result: dict[str, Any]) -> None:
    c, o = result["ceiling"], result["tenancy_overhead"]
    groups = ["W3 read", "W4 write"]
    bars = {
        "tenantsvc": [result["w3_read"]["rps"], result["w4_write"]["rps"]],
        "tenancy bypassed (pinned)": [o["w3_pinned_rps"], o["w4_pinned_rps"]],
        "database ceiling (pgbench)": [c["w3_pgbench_tps"], c["w4_pgbench_tps"]],
    }
    if "w3_one_schema_tps" in c:  # the database's own rate over one schema, as pinned is
        bars["database, one schema (pgbench)"] = [c["w3_one_schema_tps"], c["w4_one_schema_tps"]]
    grouped_bars(ax, groups, bars, width=0.8 / len(bars))
    ax.set_ylabel("requests (transactions) per second")
    cfg = result["config"]
    ax.set_title(f"T={cfg['T']} tenants, {cfg['CONNS']} connections, {cfg['WORKERS']} workers, "
                 f"{result['date']}")  # fmt: skip


def tenants(ax: Any, result: dict[str, Any]) -> None:
    """W3 over T tenants and over the whole fleet, tenant-affine pool against a plain one."""
    scale, t = result["scale"], result["config"]["T"]
    on, off = scale["w3_read"], scale["w3_read_affinity_off"]
    n = f"t{scale['tenants']}_rps"
    groups = [f"{t} tenants", f"{scale['tenants']:,} tenants", f"{scale['tenants']:,}, cold"]
    bars = {
        "tenant-affine pool": [on[f"t{t}_rps"], on[n], on["cold_first_run_rps"]],
        "plain FIFO pool": [off[f"t{t}_rps"], off[n], off["cold_first_run_rps"]],
    }
    grouped_bars(ax, groups, bars, width=0.38)
    ax.set_title(f"W3 read at scale: ratio {on['ratio']} (affine), {off['ratio']} (plain)")


def grouped_bars(ax: Any, groups: list[str], bars: dict[str, list[float]], width: float) -> None:
    """One bar per series in each group, centred on the group, labelled with its value."""
    middle = (len(bars) - 1) / 2
    for i, (label, values) in enumerate(bars.items()):
        xs = [g + (i - middle) * width for g in range(len(groups))]
        ax.bar_label(ax.bar(xs, values, width, label=label), fmt="%.0f", fontsize=8)
    ax.set_xticks(range(len(groups)), groups)
    ax.legend(fontsize=8)


APPS = {"tenantsvc": "tenantsvc", "django_tenants_tuned": "django-tenants, tuned",
        "django_tenants_default": "django-tenants, defaults"}  # fmt: skip


def django(sources: list[str], target: str) -> None:
    """W3 and W4 of each comparison run (one per tenant count), one bar per app."""
    results = [json.loads(open(source).read()) for source in sources]  # noqa: SIM115
    groups: list[str] = []
    bars: dict[str, list[float]] = {label: [] for label in APPS.values()}
    for result in results:
        for w, name in (("w3_read", "W3 read"), ("w4_write", "W4 write")):
            groups.append(f"{name}, {result['config']['T']:,} tenants")
            for app, label in APPS.items():
                bars[label].append(result[app][w]["rps"])
    fig, ax = plt.subplots(figsize=(3 + 2.5 * len(groups), 4.5))
    grouped_bars(ax, groups, bars, width=0.27)
    ax.set_ylabel("requests per second")
    ax.set_title(f"the same data and load, {results[0]['config']['CONNS']} connections, "
                 f"{results[0]['nproc']} cores, {results[0]['date']}")  # fmt: skip
    fig.tight_layout()
    fig.savefig(target, dpi=110)


if __name__ == "__main__":
    if sys.argv[1] == "--django":
        django(sys.argv[2:-1], sys.argv[-1])
    else:
        main(sys.argv[1], sys.argv[2])
