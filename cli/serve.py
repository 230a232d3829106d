"""``tenantctl serve``: uvicorn (uvloop + httptools), on the embedded default when no URL."""

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from cli.common import engine_for_cli, fail, run
from tenantsvc.wording import shown

app = typer.Typer()

_OWN_APP = "tenantsvc.main:app"


def _bootstrap_embedded(host: str, port: int) -> None:
    import asyncio
    import json

    from tenantsvc.db.embedded import ensure_database_url
    from tenantsvc.demo import DEMO_SLUG, bootstrap_demo
    from tenantsvc.settings import get_settings

    settings = ensure_database_url(get_settings())

    key_file = settings.embedded_data_dir.parent / "demo.json"
    known = json.loads(key_file.read_text())["api_key"] if key_file.exists() else None

    async def work() -> str:
        async with engine_for_cli() as engine:  # the audit trail names tenantctl
            return await bootstrap_demo(engine, known)

    key = asyncio.run(work())
    if key != known:
        key_file.write_text(json.dumps({"slug": DEMO_SLUG, "api_key": key}))
        key_file.chmod(0o600)
    base = f"http://{host}:{port}"
    typer.echo(f"embedded PostgreSQL ready (data in {settings.embedded_data_dir})")
    typer.echo("try:")
    typer.echo(f"  curl -s {base}/products -H 'X-Tenant-ID: {DEMO_SLUG}' "
               f"-H 'Authorization: Bearer {key}'")  # fmt: skip


def _check_database(workers: int) -> None:
    """A database that cannot be reached is one line and exit 1 here, where every worker would
    otherwise fail its startup with a traceback of its own. A pool the server cannot hold is a
    warning here, where it would otherwise first show under load: "too many clients", 503s;
    so is a database that takes no writes (a standby), where it would first show as every
    write's 503. (``engine_for_cli`` connects at once: a database away is its one line.)"""
    from tenantsvc.settings import get_settings
    from tenantsvc.tenancy.doctor import Check, check_pool, check_writable

    planned = get_settings().model_copy(update={"workers": workers})

    async def work() -> list[Check]:
        async with engine_for_cli(pool_size=1) as engine, engine.connect() as conn:
            return [await check_writable(conn), await check_pool(conn, planned)]

    for check in run(work):
        if check.status != "ok":
            typer.echo(f"warning: {check.name}: {shown(check.detail)}", err=True)


@contextmanager
def _metrics_shared() -> Iterator[None]:
    """Each worker has its own counters; /metrics must add them all up, whichever worker the
    scrape lands on: a directory for their files, unless one is given, removed at exit (one
    was left behind per start)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="tenantsvc-metrics-") as shared:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared
        yield


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes.")] = None,
    app: Annotated[
        str, typer.Option(help="The app, as module:name: yours, built with create_app(routers=).")
    ] = _OWN_APP,
) -> None:
    """Run the API (uvicorn); without TENANTSVC_DATABASE_URL, on an embedded PostgreSQL.

    The embedded server is started and migrated, with a demo tenant, and a curl to try is
    printed."""
    import signal
    import sys

    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    from cli.workers import check_free
    from tenantsvc.settings import get_settings

    settings = get_settings()
    try:  # before the embedded server starts, and before any worker
        check_free(host, port)
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    if settings.database_url is None:
        _bootstrap_embedded(host, port)
        # uvicorn re-raises SIGTERM after a graceful shutdown; exiting normally instead lets
        # the embedded server's exit hook stop PostgreSQL rather than leave it running.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    count = workers or settings.workers
    _check_database(count)
    if app != _OWN_APP:  # an author's module, found where they run it (uvicorn's --app-dir .)
        sys.path.insert(0, os.getcwd())
    from cli.workers import run_workers
    from tenantsvc.observability.logs import uvicorn_log_config
    from tenantsvc.request_head import BoundedHeadProtocol

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        workers=count,
        loop="uvloop",
        http=BoundedHeadProtocol,  # httptools, with a bound on the request's head
        timeout_keep_alive=settings.keep_alive_seconds,
        # Unbounded by default: a client sending its body slowly, or not reading its answer,
        # held a SIGTERM'd worker until the deploy's SIGKILL, and its last usage flush with it.
        timeout_graceful_shutdown=settings.shutdown_timeout_seconds,
        log_config=uvicorn_log_config(settings.log_level),
        access_log=False,  # tenantsvc.access logs each request with its id and tenant
        server_header=False,  # "server: uvicorn" tells a scanner what to try; no client needs it
    )
    if count > 1:
        with _metrics_shared():
            run_workers(config)
    else:
        server = uvicorn.Server(config)
        server.run()
        if not server.started:
            raise typer.Exit(STARTUP_FAILURE)
