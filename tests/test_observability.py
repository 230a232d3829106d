"""Metrics, structured logs with request id and tenant, readiness."""

import asyncio
import contextlib
import errno
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantsvc.observability import metrics
from tenantsvc.observability.allocated import AllocatedDict
from tenantsvc.observability.logs import json_handler
from tenantsvc.observability.metrics import TenantLabels
from tenantsvc.testing.app import SCRAPE, stop_app
from tests.conftest import Running, TenantHandle, make_settings, start_app


async def test_metrics_are_for_the_scraper_alone(
    client: httpx.AsyncClient, tenant_a: TenantHandle, database_url: str
) -> None:
    """/metrics names every tenant a worker served and how busy each is, on the port every
    client reaches: only the scraper's token reads it, and without one set it is off."""
    await client.get("/products", headers=tenant_a.headers)
    scraped = await client.get("/metrics", headers=SCRAPE)
    assert "tenantsvc_requests_total{" in scraped.text
    token = SCRAPE["Authorization"]
    spelt = {"Authorization": token.replace("Bearer ", "bearer  ")}  # RFC 9110: any case, 1+ SP
    assert (await client.get("/metrics", headers=spelt)).status_code == 200
    wrong = [{}, tenant_a.headers, {"Authorization": token + "x"},
             {"Authorization": token.removeprefix("Bearer ")}]  # fmt: skip
    for refused in wrong:
        answer = await client.get("/metrics", headers=refused)
        assert (answer.status_code, answer.headers["www-authenticate"]) == (401, "Bearer")
        assert "tenantsvc_requests_total" not in answer.text
    manager, running = await start_app(make_settings(database_url, metrics_token=None))
    try:
        off = await running.client.get("/metrics", headers=SCRAPE)
    finally:
        await stop_app(manager, running)
    assert (off.status_code, off.json()["detail"]) == (
        404,
        "metrics are off: set TENANTSVC_METRICS_TOKEN",
    )


async def test_metrics_count_requests_by_route_status_and_tenant(
    database_url: str, tenant_a: TenantHandle
) -> None:
    """On an app of its own: the session's app has given its tenant labels (100) to the
    tenants of earlier tests, and would count this one under _other."""
    manager, running = await start_app(make_settings(database_url))
    try:
        client = running.client
        await client.get("/products/1", headers=tenant_a.headers)
        await client.head("/products/1", headers=tenant_a.headers)
        await client.get("/products", headers={"X-Tenant-ID": "BAD"})
        body = (await client.get("/metrics", headers=SCRAPE)).text
    finally:
        await stop_app(manager, running)
    assert (
        'tenantsvc_requests_total{method="GET",route="/products/{product_id}",status="404",'
        f'tenant="{tenant_a.slug}"}}'
    ) in body
    assert (  # under its own method and the route it was served by
        'tenantsvc_requests_total{method="HEAD",route="/products/{product_id}",status="404",'
        f'tenant="{tenant_a.slug}"}}'
    ) in body
    assert 'route="unmatched",status="400",tenant=""' in body
    assert "tenantsvc_request_seconds_bucket" in body
    assert 'tenantsvc_pool_checked_out{pool="primary"}' in body


async def test_pool_sampler_outlives_a_failed_recording(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    failures = [OSError("No space left on device"), OSError("still full")]
    calls: list[object] = []
    fourth = asyncio.Event()

    def observe(engines: object) -> None:
        calls.append(engines)
        if len(calls) == 4:
            fourth.set()  # wakes the test before the sampler's next sleep ends
        if failures:
            raise failures.pop(0)

    monkeypatch.setattr(metrics, "observe_pools", observe)
    sampler = asyncio.create_task(metrics.sample_pools({}, 0.001))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(fourth.wait(), 2)
    sampler.cancel()
    await asyncio.gather(sampler, return_exceptions=True)
    assert len(calls) == 4  # it went on after the failures
    warnings = [r for r in caplog.records if "pool gauges" in r.getMessage()]
    assert len(warnings) == 1  # once per run of failures, not once per second
    assert warnings[0].exc_info is not None


def test_tenant_label_is_bounded() -> None:
    labels = TenantLabels(limit=2)
    assert [labels(s) for s in ("a", "b", "c", "a", "d", None)] == [
        "a",
        "b",
        "_other",
        "a",
        "_other",
        "",
    ]


@pytest.fixture
def json_logs() -> Iterator[list[str]]:
    """Every log record of the test, rendered by the service's own JSON formatter."""
    lines: list[str] = []
    handler = json_handler()
    formatter = handler.formatter
    assert formatter is not None

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            assert formatter is not None
            lines.append(formatter.format(record))

    capture = Capture()
    for f in handler.filters:
        capture.addFilter(f)
    root = logging.getLogger()
    root.addHandler(capture)
    old = root.level
    root.setLevel(logging.INFO)
    yield lines
    root.removeHandler(capture)
    root.setLevel(old)


async def test_every_log_line_of_a_request_has_its_id_and_tenant_and_no_secret(
    client: httpx.AsyncClient, tenant_a: TenantHandle, json_logs: list[str]
) -> None:
    response = await client.get(
        "/products", headers={**tenant_a.headers, "X-Request-ID": "req-12345678"}
    )
    assert response.headers["x-request-id"] == "req-12345678"
    await client.post("/orders", json={"user_id": 1, "items": [{"product_id": 1, "quantity": 1}]},
                      headers=tenant_a.headers)  # fmt: skip
    records = [json.loads(line) for line in json_logs]
    access = [r for r in records if r["logger"] == "tenantsvc.access"]
    assert {"request_id": "req-12345678", "tenant": tenant_a.slug, "status": 200} | {
        "route": "/products"
    } == {k: access[0][k] for k in ("request_id", "tenant", "status", "route")}
    assert all(r["request_id"] and r["tenant"] == tenant_a.slug for r in access)
    everything = "\n".join(json_logs)
    assert tenant_a.api_key not in everything
    assert tenant_a.api_key[:12] not in everything


async def test_an_unhandled_database_error_logs_no_row_values(
    client: httpx.AsyncClient, tenant_a: TenantHandle, engine: AsyncEngine, json_logs: list[str]
) -> None:
    """SQLAlchemy writes a failed statement's parameters into its error, and the 500's log
    line carries the error: a user's email and name would sit in the logs, beyond the reach
    of the erasure that removes them from the database."""
    boom = f"""
        CREATE FUNCTION {tenant_a.schema}.boom() RETURNS trigger LANGUAGE plpgsql
            AS $$ BEGIN RAISE EXCEPTION 'boom'; END $$;
        CREATE TRIGGER boom BEFORE INSERT ON {tenant_a.schema}.users
            FOR EACH ROW EXECUTE FUNCTION {tenant_a.schema}.boom();
    """
    async with engine.begin() as conn:
        driver: Any = (await conn.get_raw_connection()).driver_connection
        await driver.execute(boom)  # asyncpg: several statements in one
    person = {"email": "private.person@example.org", "name": "Private Person"}
    response = await client.post("/users", json=person, headers=tenant_a.headers)
    assert response.status_code == 500
    everything = "\n".join(json_logs)
    assert "boom" in everything  # the error is logged ...
    assert "private.person" not in everything  # ... without the row it was writing
    assert "Private Person" not in everything


def test_uvicorn_lines_carry_the_message_once_without_colour_codes(
    json_logs: list[str],
) -> None:
    logging.getLogger("uvicorn.error").info(
        "Started server process [%d]", 42, extra={"color_message": "Started \x1b[36m%d\x1b[0m"}
    )
    (record,) = (json.loads(line) for line in json_logs)
    assert record["message"] == "Started server process [42]"
    assert "color_message" not in record


CHATTER = """
import logging.config, sys
from tenantsvc.observability.logs import uvicorn_log_config
logging.config.dictConfig(uvicorn_log_config(sys.argv[1]))
for name in ("alembic.runtime.plugins", "tenantsvc.db.affinity.AffinityPool", "tenantsvc.x"):
    logging.getLogger(name).info("info %s", name)
    logging.getLogger(name).warning("warning %s", name)
"""


@pytest.mark.parametrize(
    ("level", "seen"),
    [
        ("INFO", ["warning alembic.runtime.plugins", "warning tenantsvc.db.affinity.AffinityPool",
                  "info tenantsvc.x", "warning tenantsvc.x"]),
        ("DEBUG", [f"{kind} {name}" for name in ("alembic.runtime.plugins",
                   "tenantsvc.db.affinity.AffinityPool", "tenantsvc.x")
                   for kind in ("info", "warning")]),
        ("ERROR", []),
    ],
)  # fmt: skip
def test_the_service_logs_leave_out_libraries_chatter(level: str, seen: list[str]) -> None:
    """Alembic's seven "setup plugin" lines at every start, the pool's disposal at every stop:
    out of the service's logs below DEBUG, warnings kept."""
    ran = subprocess.run([sys.executable, "-c", CHATTER, level], capture_output=True, text=True)
    assert [json.loads(line)["message"] for line in ran.stdout.splitlines()] == seen


async def test_hostile_request_id_is_replaced(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "x\\"})
    assert response.headers["x-request-id"] != "x\\"
    assert len(response.headers["x-request-id"]) == 32


async def test_readyz_needs_the_shared_track_at_head(
    client: httpx.AsyncClient, engine: AsyncEngine, running: Running
) -> None:
    assert (await client.get("/readyz")).status_code == 200
    async with engine.begin() as conn:
        current = await conn.scalar(text("SELECT version_num FROM tenantsvc.alembic_version"))
        await conn.execute(text("UPDATE tenantsvc.alembic_version SET version_num = 's0001'"))
    try:
        response = await client.get("/readyz")
        assert response.status_code == 503
        assert "migrate-all" in response.json()["detail"]
        assert (await client.get("/healthz")).status_code == 200  # liveness is not readiness
    finally:
        async with engine.begin() as conn:
            await conn.execute(
                text("UPDATE tenantsvc.alembic_version SET version_num = :v"), {"v": current}
            )


@contextlib.contextmanager
def _small_tmpfs(size: str, tmp_path: Any) -> Iterator[str]:
    """A filesystem that fills up: a tmpfs of ``size`` (mounting needs root, as CI is)."""
    mounted = tmp_path / "small"
    mounted.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mounted)],
                      capture_output=True, check=False).returncode != 0:  # fmt: skip
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        yield str(mounted)
    finally:
        subprocess.run(["umount", str(mounted)], check=False)


_NEW_LABELS = """
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from tenantsvc.observability import metrics
from tenantsvc.observability.allocated import AllocatedDict
for i in range(6000):  # each a new series in the worker's file: past what the disk holds
    metrics.REQUESTS.labels("/products", "GET", "200", f"t{i}").inc()
registry = CollectorRegistry()
multiprocess.MultiProcessCollector(registry)
print(generate_latest(registry).decode().count("tenantsvc_requests_total{"))
"""


@pytest.mark.parametrize("size", ["8k", "160k"], ids=["no-room-for-a-file", "fills-up"])
def test_a_full_metrics_disk_drops_samples_and_kills_no_worker(size: str, tmp_path: Any) -> None:
    """The workers' metrics files are mapped into memory, and prometheus_client grew them by
    setting their length only: on a full filesystem the first write to a new page was a
    SIGBUS. Served with its metrics directory on a full tmpfs, every worker died at its next
    new label, again after each restart (18 of 1,500 requests answered). Now the sample is
    dropped, once logged, and the rest are scraped."""
    with _small_tmpfs(size, tmp_path) as directory:
        run = subprocess.run([sys.executable, "-c", _NEW_LABELS], capture_output=True,
                             text=True, timeout=60, check=False,
                             env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": directory})  # fmt: skip
    assert run.returncode == 0, (run.returncode, run.stderr[-500:])  # -7: SIGBUS
    assert run.stderr.count("metrics are not being recorded: No space left on device") == 1
    recorded = int(run.stdout)
    assert (recorded == 0) if size == "8k" else (0 < recorded < 6000), recorded


def test_where_space_cannot_be_taken_ahead_metrics_are_recorded_as_before(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filesystem without fallocate (musl's posix_fallocate says so, where glibc's writes
    zeros instead): the files grow as the library grows them, rather than record nothing."""

    def unsupported(*args: object) -> None:
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(os, "posix_fallocate", unsupported)
    recorded = AllocatedDict(str(tmp_path / "counter_1.db"))
    for i in range(3000):  # past the first 64 KiB: grown twice
        recorded.write_value(f"series {i}", float(i), 0.0)
    assert recorded.read_value("series 2999") == (2999.0, 0.0)
    recorded.close()
