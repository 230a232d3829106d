"""Prometheus metrics.

The tenant label is bounded: the first ``max_tenant_labels`` tenants a worker sees get their
own label, every later one is counted under ``_other``. With thousands of tenants an unbounded
label would multiply every series by the fleet size (Prometheus memory and query cost grow
with series count); set the bound to 0 to drop per-tenant series altogether.
"""

import asyncio
import logging
import os
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantsvc.db.affinity import AffinityCounts, AffinityPool
from tenantsvc.observability import allocated

if TYPE_CHECKING:
    from tenantsvc.tenancy.fleet import Summary

log = logging.getLogger(__name__)
allocated.install()  # before the first metric: a full disk must not kill a worker (SIGBUS)

REQUESTS = Counter(
    "tenantsvc_requests_total", "HTTP requests", ["route", "method", "status", "tenant"]
)
LATENCY = Histogram(
    "tenantsvc_request_seconds", "HTTP request latency", ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)  # fmt: skip
POOL_CHECKED_OUT = Gauge(
    "tenantsvc_pool_checked_out", "Connections in use", ["pool"], multiprocess_mode="livesum"
)
POOL_OVERFLOW = Gauge(
    "tenantsvc_pool_overflow", "Connections beyond pool_size", ["pool"], multiprocess_mode="livesum"
)
POOL_CHECKOUTS = Gauge(
    "tenantsvc_pool_tenant_checkouts",
    "Tenant checkouts since start, by the connection found: the tenant's home, another that "
    "had served the tenant (warm), or one that had not (cold); see db/affinity.py",
    ["pool", "found"],
    multiprocess_mode="livesum",
)
REPLAYS = Counter(
    "tenantsvc_replays_total",
    "Requests served again because the database rolled their transaction back (tenant_routes.py)",
    ["reason"],
)
IDEMPOTENCY = Counter(
    "tenantsvc_idempotency_keys_total",
    "Writes sent with an Idempotency-Key, by outcome: stored (the write ran), replayed (the "
    "first answer sent again), reused (a 422: another request under the same key)",
    ["outcome"],
)
ACTIVITY_FLUSHES = Counter(
    "tenantsvc_activity_flushes_total",
    "Writes of what a worker served (keys' last use, tenants' requests; tenancy/activity.py), "
    "by outcome: ok, or failed (kept for the next: alert when only these grow)",
    ["outcome"],
)
OTHER = "_other"


class TenantLabels:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen: set[str] = set()

    def __call__(self, slug: str | None) -> str:
        if slug is None:
            return ""
        if slug in self.seen:
            return slug
        if len(self.seen) < self.limit:
            self.seen.add(slug)
            return slug
        return OTHER


def observe_pools(engines: dict[str, AsyncEngine]) -> None:
    for name, engine in engines.items():
        pool = engine.sync_engine.pool
        POOL_CHECKED_OUT.labels(name).set(pool.checkedout())  # type: ignore[attr-defined]
        POOL_OVERFLOW.labels(name).set(max(0, pool.overflow()))  # type: ignore[attr-defined]
        if isinstance(pool, AffinityPool):
            for found in AffinityCounts.__slots__:
                POOL_CHECKOUTS.labels(name, found).set(getattr(pool.affinity, found))


async def sample_pools(engines: dict[str, AsyncEngine], every_seconds: float) -> None:
    """Records this worker's pool gauges every ``every_seconds``, until cancelled.

    With several workers a scrape is answered by one of them, which reads the others' gauges
    from the files they wrote: gauges written only when a scrape arrives showed the other
    workers' pools as they were at the last scrape that happened to reach them, or not at all.
    A gauge set on every checkout instead would cost each request a write to that file.

    A failed recording (the multiprocess directory's disk full, say) is logged, once per run
    of failures, and the sampling goes on: a dead sampler would leave the gauges stale with
    nothing to say so."""
    failing = False
    while True:
        try:
            observe_pools(engines)
            failing = False
        except Exception:
            if not failing:
                log.warning("recording the pool gauges failed; retrying", exc_info=True)
            failing = True
        await asyncio.sleep(every_seconds)


def render() -> bytes:
    """This worker's metrics, or every worker's when PROMETHEUS_MULTIPROC_DIR is set."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest()


def write_migration_outcomes(path: str, summary: "Summary", seconds: float) -> None:
    """migrate-all runs as a job, not a server: its outcome goes to a file in the node
    exporter's textfile-collector format, written atomically, for the deploy to be alerted on."""
    import time

    from prometheus_client import write_to_textfile

    registry = CollectorRegistry()
    tenants = Gauge("tenantsvc_migrate_all_tenants", "Tenants by outcome of the last run",
                    ["outcome"], registry=registry)  # fmt: skip
    failed = len(summary.failures)
    for outcome, count in (("migrated", summary.migrated), ("skipped", summary.skipped),
                           ("failed", failed), ("later", summary.later)):  # fmt: skip
        tenants.labels(outcome).set(count)
    retried = "Tenant migrations run again after a lock timeout or a deadlock in the last run"
    Gauge("tenantsvc_migrate_all_lock_retries", retried,
          registry=registry).set(summary.lock_retries)  # fmt: skip
    Gauge("tenantsvc_migrate_all_duration_seconds", "Wall time of the last run",
          registry=registry).set(seconds)  # fmt: skip
    Gauge("tenantsvc_migrate_all_last_run_timestamp_seconds", "When the last run ended",
          registry=registry).set(time.time())  # fmt: skip
    write_to_textfile(path, registry)
