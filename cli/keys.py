"""API key commands: create, list, revoke. Keys are shown once and stored as digests."""

from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from cli.common import JsonOpt, duration, engine_for_cli, print_json, print_table, run, spoken
from cli.completion import Slug

if TYPE_CHECKING:
    from tenantsvc.tenancy.admin import KeyInfo

app = typer.Typer(help="Manage a tenant's API keys.", rich_markup_mode="markdown")
ExpiresIn = Annotated[
    timedelta | None,
    typer.Option(parser=duration, metavar="90d", help="The new key stops working after this."),
]


@app.command()
def create(
    slug: Slug,
    expires_in: ExpiresIn = None,
    as_json: JsonOpt = False,
) -> None:
    """Issue a new API key for a tenant (to replace the others: `keys rotate`)."""
    from tenantsvc.tenancy.admin import create_key

    async def work() -> None:
        async with engine_for_cli() as engine, engine.begin() as conn:
            key_id, key = await create_key(conn, slug, expires_in)
        if as_json:
            print_json({"slug": slug, "key_id": key_id, "api_key": key})
        else:
            lasting = f", expires in {spoken(expires_in)}" if expires_in else ""
            typer.echo(f"API key {key_id} for {slug}{lasting} (shown once): {key}")

    run(work)


@app.command()
def rotate(
    slug: Slug,
    grace: Annotated[
        timedelta,
        typer.Option(parser=duration, metavar="1h", help="How long the old keys keep working."),
    ] = timedelta(hours=1),
    expires_in: ExpiresIn = None,
    as_json: JsonOpt = False,
) -> None:
    """Issue a new key; every other live key stops working after --grace (default 1h)."""
    from tenantsvc.tenancy.admin import rotate_keys

    async def work() -> None:
        async with engine_for_cli() as engine, engine.begin() as conn:
            key_id, key, ending, at = await rotate_keys(conn, slug, grace, expires_in)
        if as_json:
            print_json({"slug": slug, "key_id": key_id, "api_key": key, "ending": ending,
                        "ending_at": at.isoformat()})  # fmt: skip
            return
        typer.echo(f"API key {key_id} for {slug} (shown once): {key}")
        if ending:
            old = ", ".join(map(str, ending))
            which = f"keys {old} stop" if len(ending) > 1 else f"key {old} stops"
            typer.echo(f"{which} working at {at:%Y-%m-%d %H:%M:%S %Z}")

    run(work)


@app.command("list")
def list_(slug: Slug, as_json: JsonOpt = False) -> None:
    """List a tenant's keys by id and prefix (never the keys themselves), and their last use.

    The last use is exact to within a minute (TENANTSVC_USAGE_FLUSH_SECONDS): it shows
    which clients still send an old key."""
    from tenantsvc.tenancy.admin import list_keys

    async def work() -> None:
        async with engine_for_cli() as engine, engine.connect() as conn:
            found = await list_keys(conn, slug)
        if as_json:
            print_json([k.as_json() for k in found])
            return
        rows = ((str(k.id), f"{k.prefix}…", f"{k.created_at:%Y-%m-%d %H:%M}", _state(k),
                 f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "never")
                for k in found)  # fmt: skip
        print_table(("id", "prefix", "created", "state", "last used"), rows, right=("id",),
                    empty=f"{slug} has no API keys")  # fmt: skip

    run(work)


def _state(key: "KeyInfo") -> str:
    from datetime import UTC, datetime

    if key.revoked_at:
        return f"revoked {key.revoked_at:%Y-%m-%d %H:%M}"
    if key.expires_at is None:
        return "active"
    verb = "expired" if key.expires_at <= datetime.now(UTC) else "active, expires"
    return f"{verb} {key.expires_at:%Y-%m-%d %H:%M}"


@app.command()
def revoke(
    slug: Slug,
    key_id: Annotated[int, typer.Argument(min=1, max=2**63 - 1, help="From `keys list`.")],
    as_json: JsonOpt = False,
) -> None:
    """Revoke a key; every worker stops accepting it within one registry poll."""
    from tenantsvc.tenancy.admin import list_keys, revoke_key

    async def work() -> None:
        async with engine_for_cli() as engine, engine.begin() as conn:
            before = await revoke_key(conn, slug, key_id)
            live = sum(key.live for key in await list_keys(conn, slug))
        if as_json:
            print_json({"slug": slug, "key_id": key_id, "revoked": True,
                        "revoked_before": before and before.isoformat(),
                        "live_keys": live})  # fmt: skip
        elif before:
            typer.echo(f"key {key_id} of {slug} was revoked before, at {before:%Y-%m-%d %H:%M %Z}")
        else:
            typer.echo(f"revoked key {key_id} of {slug}")
        if not live and not as_json:  # a compromised key's revocation may mean to; say so
            typer.echo(f"note: {slug} has no live API key now: every request of its clients is "
                       f"refused until `tenantctl keys create {slug}`", err=True)  # fmt: skip

    run(work)
