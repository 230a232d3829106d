"""Migration commands: one tenant, or the whole fleet (shared track first)."""

from typing import Annotated

import typer

from cli.common import engine_for_cli, fail, print_json, run

app = typer.Typer()

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]


def _outcome_json(o: object) -> dict[str, object]:
    from dataclasses import asdict

    return asdict(o)  # type: ignore[call-overload, no-any-return]


@app.command()
def migrate(
    slug: str,
    to: Annotated[str, typer.Option("--to", help="Target revision.")] = "head",
    as_json: JsonOpt = False,
) -> None:
    """Migrate one tenant's schema (the shared track first)."""
    from tenantsvc.tenancy.admin import get_tenant
    from tenantsvc.tenancy.fleet import migrate_one, migrate_shared

    async def work() -> None:
        async with engine_for_cli() as engine:
            await migrate_shared(engine)
            async with engine.connect() as conn:
                tenant = await get_tenant(conn, slug)
            outcome = await migrate_one(engine, tenant.slug, tenant.schema, to)
        if as_json:
            print_json(_outcome_json(outcome))
        if outcome.error:
            raise fail(f"{slug}: {outcome.error.splitlines()[0]}")
        if not as_json:
            typer.echo(f"{slug}: {outcome.before} -> {outcome.after}")

    run(work)


@app.command("migrate-all")
def migrate_all(
    to: Annotated[str, typer.Option("--to", help="Target revision.")] = "head",
    as_json: JsonOpt = False,
) -> None:
    """Migrate the shared track, then every tenant, each in its own transaction."""
    from tenantsvc.tenancy import fleet

    async def work() -> None:
        async with engine_for_cli() as engine:
            outcomes = await fleet.migrate_all(engine, to)
        failed = [o for o in outcomes if o.error]
        if as_json:
            print_json([_outcome_json(o) for o in outcomes])
        else:
            moved = sum(1 for o in outcomes if o.before != o.after and not o.error)
            typer.echo(f"{len(outcomes)} tenants: {moved} migrated, {len(failed)} failed")
            for o in failed:
                typer.echo(f"  {o.slug}: {(o.error or '').splitlines()[0]}", err=True)
        if failed:
            raise typer.Exit(1)

    run(work)
