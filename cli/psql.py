"""``tenantctl psql SLUG``: psql in one tenant's schema, for an operator looking into a tenant.

The schema comes from the registry (an archived tenant's from where its schema went), never
from the argument, and is set as the session's search_path when it starts (``PGOPTIONS``).
That is the session-level setting requests must never get, and it is safe here: the session
is psql's own and ends with it, where a pooled connection would carry it to another tenant's
request. The connection details travel in libpq's ``PG*`` variables, so the password is not
on a command line for ``ps`` to show. psql comes from PATH, else from the embedded
PostgreSQL's own binaries, so it works wherever ``make run`` does. Behind PgBouncer in
transaction mode it refuses: the session's settings would not stay with the session.
"""

import os
import shutil
import subprocess
from pathlib import Path
from typing import Annotated

import typer

from cli.common import engine_for_cli, fail, run
from cli.completion import Slug

app = typer.Typer()

# asyncpg's ``ssl`` query parameter takes libpq's sslmode names.
_LIBPQ = {"host": "PGHOST", "ssl": "PGSSLMODE", "sslmode": "PGSSLMODE"}


def libpq_env(url: str) -> dict[str, str]:
    """The ``PG*`` variables for a SQLAlchemy URL (a socket directory may come as ``?host=``)."""
    from sqlalchemy import make_url

    parsed = make_url(url)
    found = {"PGHOST": parsed.host, "PGPORT": parsed.port, "PGUSER": parsed.username,
             "PGPASSWORD": parsed.password, "PGDATABASE": parsed.database}  # fmt: skip
    for name, value in parsed.query.items():
        if name in _LIBPQ and isinstance(value, str):
            found[_LIBPQ[name]] = value
    return {name: str(value) for name, value in found.items() if value}


def psql_binary() -> str:
    found = shutil.which("psql")
    if found:
        return found
    from pgserver._commands import POSTGRES_BIN_PATH

    bundled = Path(POSTGRES_BIN_PATH) / "psql"
    if bundled.exists():
        return str(bundled)
    raise fail("psql not found: install the PostgreSQL client (Debian: postgresql-client)")


def session_options(schema: str, read_only: bool, role: str | None = None) -> str:
    """``PGOPTIONS`` for the session, after any the caller had set: the tenant's search_path
    and, when it has one, its role (``RESET ROLE`` leaves it)."""
    options = [os.environ.get("PGOPTIONS", ""), f"-c search_path={schema}"]
    if role:
        options.append(f"-c role={role}")
    if read_only:
        options.append("-c default_transaction_read_only=on")
    return " ".join(o for o in options if o)


def _wait(process: "subprocess.Popen[bytes]") -> int:
    """psql's exit code. Ctrl-C reaches psql too, which cancels its query and goes on: this
    process must not die of it and leave psql without its parent."""
    while True:
        try:
            return process.wait()
        except KeyboardInterrupt:
            continue


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def psql(
    ctx: typer.Context,
    slug: Slug,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Every transaction read-only.")
    ] = False,
) -> None:
    """Open psql in a tenant's schema (its search_path); other arguments go to psql."""
    from tenantsvc.settings import get_settings
    from tenantsvc.tenancy.admin import get_tenant

    if get_settings().pgbouncer:
        raise fail(
            "behind PgBouncer (TENANTSVC_PGBOUNCER) a session's search_path cannot be set: "
            "transaction pooling refuses it at connect, and a SET would reach other clients' "
            "transactions; point TENANTSVC_DATABASE_URL at PostgreSQL itself for psql"
        )

    async def work() -> tuple[str, str, str | None, str]:
        async with engine_for_cli() as engine, engine.connect() as conn:
            tenant = await get_tenant(conn, slug)
            url = engine.url.render_as_string(hide_password=False)
        return tenant.location, tenant.status, tenant.role, url

    schema, status, role, url = run(work)
    if status != "active":
        typer.echo(f"note: tenant {slug} is {status}; its schema is {schema}", err=True)
    env = {**os.environ, **libpq_env(url), "PGAPPNAME": "tenantctl psql",
           "PGOPTIONS": session_options(schema, read_only, role)}  # fmt: skip
    # The operator's own arguments, for the operator's own psql: nothing to sanitise.
    raise typer.Exit(_wait(subprocess.Popen([psql_binary(), *ctx.args], env=env)))  # noqa: S603
