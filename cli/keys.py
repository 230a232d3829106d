"""API key commands: create, list, revoke. Keys are shown once and stored as digests."""

from typing import Annotated

import typer

from cli.common import engine_for_cli, print_json, run

app = typer.Typer(help="Manage a tenant's API keys.")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]


@app.command()
def create(slug: str, as_json: JsonOpt = False) -> None:
    """Issue a new API key for a tenant."""
    from tenantsvc.tenancy.admin import create_key

    async def work() -> None:
        async with engine_for_cli() as engine, engine.begin() as conn:
            key_id, key = await create_key(conn, slug)
        if as_json:
            print_json({"slug": slug, "key_id": key_id, "api_key": key})
        else:
            typer.echo(f"API key {key_id} for {slug} (shown once): {key}")

    run(work)


@app.command("list")
def list_(slug: str, as_json: JsonOpt = False) -> None:
    """List a tenant's keys by id and prefix (never the keys themselves)."""
    from tenantsvc.tenancy.admin import list_keys

    async def work() -> None:
        async with engine_for_cli() as engine, engine.connect() as conn:
            found = await list_keys(conn, slug)
        if as_json:
            print_json([k.as_json() for k in found])
            return
        for k in found:
            state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
            typer.echo(f"{k.id}\t{k.prefix}…\t{k.created_at:%Y-%m-%d %H:%M}\t{state}")

    run(work)


@app.command()
def revoke(
    slug: str,
    key_id: Annotated[int, typer.Argument(min=1, max=2**63 - 1, help="From `keys list`.")],
    as_json: JsonOpt = False,
) -> None:
    """Revoke a key; every worker stops accepting it within one registry poll."""
    from tenantsvc.tenancy.admin import revoke_key

    async def work() -> None:
        async with engine_for_cli() as engine, engine.begin() as conn:
            await revoke_key(conn, slug, key_id)
        if as_json:
            print_json({"slug": slug, "key_id": key_id, "revoked": True})
        else:
            typer.echo(f"revoked key {key_id} of {slug}")

    run(work)
