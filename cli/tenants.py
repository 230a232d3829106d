"""Tenant lifecycle commands: create, list, show, usage, suspend, read-only, resume, drop,
restore, rename."""

import os
from functools import partial
from typing import TYPE_CHECKING, Annotated

import typer

from cli.batch import PartlyDone, all_known, one_by_one
from cli.common import JsonOpt, engine_for_cli, fail, print_json, print_table, run
from cli.completion import Slug, Slugs, known_slugs
from tenantsvc.wording import counted, shown

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from tenantsvc.tenancy.locking import LockPolicy

app = typer.Typer()


@app.command()
def create(
    slugs: Annotated[list[str], typer.Argument(metavar="SLUG", show_default=False)],
    name: Annotated[str | None, typer.Option(help="Display name (default: the slug).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Provision tenants, each atomically: schema at head, own role, registry row, API key.

    Several slugs are created in order in one process, which starts once (about 0.6 s of
    imports) instead of once per tenant. The first failure stops the rest; the tenants before
    it stay created, their keys already printed."""
    from tenantsvc.tenancy.provisioning import create_tenant
    from tenantsvc.tenancy.slugs import validate_slug

    if name is not None and len(slugs) > 1:
        raise fail("--name names one tenant: give one slug with it")

    async def check(_: "AsyncEngine") -> None:  # a bad slug fails fast, creating none
        for slug in slugs:
            validate_slug(slug)

    async def step(engine: "AsyncEngine", slug: str) -> tuple[dict[str, object], str]:
        new = await create_tenant(engine, slug, name)
        runs_as = f", role {new.role}" if new.role else ""
        said = f"created tenant {new.slug} (schema {new.schema}{runs_as})\n"
        return ({"slug": new.slug, "name": new.name, "schema": new.schema,
                 "status": new.status, "api_key": new.api_key, "key_id": new.key_id,
                 "role": new.role},
                f"{said}API key (shown once): {new.api_key}")  # fmt: skip

    one_by_one(slugs, step, as_json, "created", check)


@app.command("list")
def list_(
    status: Annotated[str | None, typer.Option(help="Only tenants with this status.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List tenants (never their keys)."""
    from tenantsvc.tenancy.admin import list_tenants

    async def work() -> None:
        async with engine_for_cli() as engine, engine.connect() as conn:
            tenants = await list_tenants(conn, status)
        if as_json:
            print_json([t.as_json() for t in tenants])
            return
        rows = ((t.slug, t.name, t.archived_schema or t.schema, t.status,
                 f"{t.created_at:%Y-%m-%d %H:%M}")
                for t in tenants)  # fmt: skip
        print_table(("slug", "name", "schema", "status", "created"), rows,
                    empty=f"no {status} tenants" if status else "no tenants")  # fmt: skip

    run(work)


def _set_status(slugs: list[str], status: str, as_json: bool) -> None:
    from tenantsvc.tenancy.admin import set_status
    from tenantsvc.tenancy.models import TenantStatus

    async def step(engine: "AsyncEngine", slug: str) -> tuple[dict[str, object], str]:
        async with engine.begin() as conn:
            tenant = await set_status(conn, slug, TenantStatus(status))
        return tenant.as_json(), f"tenant {tenant.slug} is {tenant.status}"

    one_by_one(slugs, step, as_json, "changed", partial(all_known, slugs=slugs))


@app.command()
def show(slug: Slug, as_json: JsonOpt = False) -> None:
    """Show one tenant."""
    from tenantsvc.tenancy.admin import get_tenant

    async def work() -> None:
        async with engine_for_cli() as engine, engine.connect() as conn:
            tenant = await get_tenant(conn, slug)
        if as_json:
            print_json(tenant.as_json())
        else:
            for key, value in tenant.as_json().items():
                typer.echo(f"{key}: {shown(str(value))}")

    run(work)


Days = Annotated[
    int, typer.Option(min=1, max=3660, help="Requests over the last N UTC days, today's included.")
]


@app.command()
def usage(
    top: Annotated[int | None, typer.Option(min=1, max=2**31 - 1, help="Only the first N.")] = None,
    status: Annotated[str | None, typer.Option(help="Only tenants with this status.")] = None,
    days: Days = 30,
    by: Annotated[str, typer.Option(help="Order: size or requests.")] = "size",
    as_json: JsonOpt = False,
) -> None:
    """Each tenant's rows, disk and requests served, biggest (or busiest) first."""
    from tenantsvc.tenancy.usage import tenant_usage

    async def work() -> None:
        async with engine_for_cli() as engine, engine.connect() as conn:
            found = await tenant_usage(conn, status, top, days, by)
        if as_json:
            print_json([u.as_json() for u in found])
            return
        from rich.filesize import decimal

        numbers = ("rows", "tables", "indexes", "total", f"reads {days}d", f"writes {days}d")
        rows = ((u.slug, u.status, f"{u.rows:,}", decimal(u.table_bytes),
                 decimal(u.index_bytes), decimal(u.total_bytes), f"{u.reads:,}",
                 f"{u.writes:,}") for u in found)  # fmt: skip
        print_table(("slug", "status", *numbers), rows, right=numbers,
                    empty=f"no {status} tenants" if status else "no tenants")  # fmt: skip

    run(work)


@app.command()
def requests(slug: Slug, days: Days = 30, as_json: JsonOpt = False) -> None:
    """One tenant's requests served per UTC day, newest first: to bill, to see a trend."""
    from tenantsvc.tenancy.usage import daily_requests

    async def work() -> None:
        async with engine_for_cli() as engine, engine.connect() as conn:
            found = await daily_requests(conn, slug, days)
        if as_json:
            print_json([d.as_json() for d in found])
            return
        rows = ((d.day.isoformat(), f"{d.reads:,}", f"{d.writes:,}") for d in found)
        print_table(("day (UTC)", "reads", "writes"), rows, right=("reads", "writes"),
                    empty=f"no requests served for {slug} in the last {days} days")  # fmt: skip

    run(work)


@app.command()
def suspend(slugs: Slugs, as_json: JsonOpt = False) -> None:
    """Stop serving tenants (403) without touching their data."""
    _set_status(slugs, "suspended", as_json)


@app.command("read-only")
def read_only(slugs: Slugs, as_json: JsonOpt = False) -> None:
    """Serve tenants' reads and refuse their writes (503): maintenance, a move."""
    _set_status(slugs, "read_only", as_json)


@app.command()
def resume(slugs: Slugs, as_json: JsonOpt = False) -> None:
    """Serve suspended or read-only tenants fully again."""
    _set_status(slugs, "active", as_json)


def _lock_policy() -> "LockPolicy":
    """How long a purge waits for its tenant's tables: as a migration does (the settings)."""
    from tenantsvc.settings import get_settings
    from tenantsvc.tenancy.locking import LockPolicy

    return LockPolicy.from_settings(get_settings())


def _lifecycle(slugs: list[str], action: str, as_json: bool) -> None:
    from tenantsvc.tenancy import lifecycle

    async def step(engine: "AsyncEngine", slug: str) -> tuple[dict[str, object], str]:
        if action == "purge":
            tenant = await lifecycle.purge_when_free(engine, slug, _lock_policy())
        else:
            async with engine.begin() as conn:
                tenant = await getattr(lifecycle, action)(conn, slug)
        if tenant.archived_schema and action == "archive":
            said = f"tenant {tenant.slug}: archived (schema now {tenant.archived_schema})"
        else:
            said = f"tenant {tenant.slug}: {action}d"
        if action == "purge" and tenant.role:
            said += (f"; its role {tenant.role} is kept, with no rights left here: another "
                     "database on this cluster uses it (a copy of this one, or the one this was "
                     "copied from)")  # fmt: skip
        return {**tenant.as_json(), "action": action}, said

    done = f"{action}d"
    one_by_one(slugs, step, as_json, done, partial(all_known, slugs=slugs))


@app.command()
def drop(
    slugs: Slugs,
    purge: Annotated[bool, typer.Option(help="Drop the schema and its data for good.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Archive tenants (each schema renamed out of the way, not served), or --purge them."""
    if not yes:
        what = "PURGE (drop all data of)" if purge else "archive"
        named = (
            f"tenant {slugs[0]}"
            if len(slugs) == 1
            else f"{len(slugs)} tenants ({', '.join(slugs)})"
        )
        try:
            confirmed = typer.confirm(f"{what} {named}?", default=False, err=True)
        except typer.Abort:  # no terminal to answer on
            confirmed = False
        if not confirmed:
            raise fail("not confirmed (pass --yes to skip the question)")
    _lifecycle(slugs, "purge" if purge else "archive", as_json)


@app.command()
def restore(slugs: Slugs, as_json: JsonOpt = False) -> None:
    """Bring archived tenants back, every row intact, migrated to head before they are served."""
    from tenantsvc.tenancy.lifecycle import restore_at_head

    async def step(engine: "AsyncEngine", slug: str) -> tuple[dict[str, object], str]:
        done = await restore_at_head(engine, slug)
        if done.error:
            raise PartlyDone(
                f"tenant {slug!r} is back at {done.revision}, but migrating it to head failed: "
                f"{done.error}; it is not served: `tenantctl migrate {slug}`, then "
                f"`tenantctl resume {slug}`"
            )
        moved = f", migrated from {done.revision} to head" if done.behind else ""
        data = {**done.tenant.as_json(), "action": "restore", "was_at": done.revision,
                "migrated": done.behind}  # fmt: skip
        return data, f"tenant {slug}: restored{moved}"

    one_by_one(slugs, step, as_json, "restored", partial(all_known, slugs=slugs))


@app.command("service-role")
def service_role(
    name: Annotated[str, typer.Argument(help="The login role the service will connect as.")],
    password_env: Annotated[
        str | None,
        typer.Option(
            metavar="VAR",
            help="Set the role's password from this environment variable (sent to the server "
            "as a SCRAM-SHA-256 verifier, never in clear, never on a command line).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Make (or complete) a login role for the service that holds no tenant's data.

    NOINHERIT and in the serving group: it reaches a tenant's tables only as the tenant's role,
    which every request's transaction becomes, and on its own reads the registry alone. Tenants
    created or isolated later join by themselves. Then connect the service as it."""
    from tenantsvc.tenancy.service_role import create_service_role

    password = None
    if password_env is not None:
        password = os.environ.get(password_env)
        if not password:
            raise typer.BadParameter(
                f"{password_env} is not set or empty", param_hint="--password-env"
            )

    async def work() -> None:
        async with engine_for_cli() as engine:
            reachable = await create_service_role(engine, name, password)
        if as_json:
            print_json({"role": name, "tenant_roles": reachable})
        else:
            typer.echo(f"service role {name}: may become each tenant's role "
                       f"({counted(reachable, 'tenant')}), "
                       "and holds no tenant's data; connect the service as it "
                       "(TENANTSVC_DATABASE_URL with this user)")  # fmt: skip

    run(work)


@app.command()
def isolate(
    slug: Annotated[
        str | None,
        typer.Argument(help="One tenant (default: --all).", autocompletion=known_slugs),
    ] = None,
    all_tenants: Annotated[
        bool,
        typer.Option("--all", help="Every tenant without its role, or a role dropped or short."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Give tenants their own database role, which may use only their schema.

    Their transactions then run as it, so PostgreSQL itself refuses any other tenant's table.
    One tenant at a time, each in its own transaction; run again after a failure. On a tenant
    that has its role, completes its rights."""
    from tenantsvc.tenancy.roles import isolate as give_roles

    if (slug is None) == (not all_tenants):
        raise fail("give one tenant's slug or --all")

    async def work() -> None:
        async with engine_for_cli() as engine:
            done = await give_roles(engine, slug)
        if as_json:
            print_json({"isolated": done})
        elif slug is not None:
            typer.echo(f"tenant {slug} runs as its own role, with all its rights")
        else:
            typer.echo(f"gave or repaired the roles of {counted(len(done), 'tenant')}; every "
                       "tenant runs as its own role now")  # fmt: skip

    run(work)


@app.command()
def rename(
    slug: Slug,
    name: Annotated[str, typer.Option(help="The new display name.")],
    as_json: JsonOpt = False,
) -> None:
    """Change a tenant's display name (the slug and schema stay)."""
    from tenantsvc.tenancy import lifecycle

    async def work() -> None:
        async with engine_for_cli() as engine, engine.begin() as conn:
            tenant = await lifecycle.rename(conn, slug, name)
        if as_json:
            print_json(tenant.as_json())
        else:
            typer.echo(f"tenant {tenant.slug} is now named {tenant.name!r}")

    run(work)
