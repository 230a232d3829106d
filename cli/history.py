"""``tenantctl history``: the registry's audit trail."""

from datetime import timedelta
from typing import Annotated

import typer

from cli.common import JsonOpt, duration, engine_for_cli, print_json, print_table, run, spoken
from cli.completion import known_slugs

app = typer.Typer()


@app.command()
def history(
    slug: Annotated[
        str | None, typer.Argument(help="One tenant (default: all).", autocompletion=known_slugs)
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Events to show.")] = 50,
    since: Annotated[
        timedelta | None,
        typer.Option(parser=duration, metavar="7d", help="Only events this recent."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """What happened to a tenant (or every tenant), newest first, and who did it.

    Created, status changes, renames, keys, migrations, purges; when, and by whom
    (TENANTSVC_ACTOR, else user@host)."""
    from tenantsvc.tenancy.history import events

    async def work() -> None:
        async with engine_for_cli() as engine, engine.connect() as conn:
            found = await events(conn, slug, limit, since)
        if as_json:
            print_json([e.as_json() for e in found])
            return
        rows = ((f"{e.at:%Y-%m-%d %H:%M:%S}", e.slug, e.action, e.summary(), e.actor)
                for e in found)  # fmt: skip
        window = f" in the last {spoken(since)}" if since else ""
        empty = f"no events{' for ' + slug if slug else ''}{window}"
        print_table(("at", "tenant", "action", "detail", "by"), rows, empty=empty)

    run(work)
