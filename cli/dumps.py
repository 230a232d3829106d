"""Moving a tenant's rows through a file: export one, import it as a new tenant."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.common import JsonOpt, engine_for_cli, fail, print_json, run

if TYPE_CHECKING:
    from tenantsvc.tenancy.dumps import Imported

app = typer.Typer()


def _counts(rows: dict[str, int]) -> str:
    return ", ".join(f"{table} {n}" for table, n in rows.items())


@app.command("export")
def export_(
    slug: str,
    file: Path,
    hold_writes: Annotated[
        bool,
        typer.Option(
            "--hold-writes",
            help="Wait for the tenant's writes in progress and hold new ones until the file is "
            "written: after `read-only` or `suspend`, nothing committed is missing (a move).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a tenant's rows to FILE, from one consistent snapshot (API keys stay behind)."""
    from tenantsvc.settings import get_settings
    from tenantsvc.tenancy.dumps import export_tenant
    from tenantsvc.tenancy.locking import LockPolicy

    if file.exists():
        raise fail(f"{file} exists: choose a new file (an export never overwrites)")
    if not file.parent.is_dir():
        raise fail(f"{file.parent} is not a directory")

    async def work() -> None:
        async with engine_for_cli() as engine:
            hold = LockPolicy.from_settings(get_settings()) if hold_writes else None
            done = await export_tenant(engine, slug, file, hold)
        if as_json:
            print_json({"slug": done.slug, "revision": done.revision, "rows": done.rows,
                        "file": str(file)})  # fmt: skip
        else:
            typer.echo(f"exported {done.slug} at {done.revision} to {file}: {_counts(done.rows)}")

    try:
        run(work)
    except BaseException:
        file.unlink(missing_ok=True)  # no half-written export left to be mistaken for one
        raise


@app.command("import")
def import_(
    file: Path,
    slug: str,
    name: Annotated[str | None, typer.Option(help="Display name (default: the file's).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create tenant SLUG from an export, then migrate it to head.

    At the file's revision with its rows, atomically; prints the new tenant's first API key."""
    from tenantsvc.tenancy.dumps import import_tenant
    from tenantsvc.tenancy.slugs import validate_slug

    async def work() -> None:
        validate_slug(slug)
        async with engine_for_cli() as engine:
            done = await import_tenant(engine, file, slug, name)
        _report_import(done, str(file), as_json)

    run(work)


def _report_import(done: "Imported", source: str, as_json: bool) -> None:
    """What import and clone print: the new tenant, its rows and its first key; when it could
    not be migrated to head, how to finish (exit 1)."""
    new = done.tenant
    if as_json:
        print_json({"slug": new.slug, "name": new.name, "schema": new.schema,
                    "revision": done.revision, "rows": done.rows, "api_key": new.api_key,
                    "key_id": new.key_id, "error": done.error})  # fmt: skip
    else:
        typer.echo(f"imported tenant {new.slug} (schema {new.schema}) from {source}: "
                   f"{_counts(done.rows)}")  # fmt: skip
        typer.echo(f"API key (shown once): {new.api_key}")
    if done.error:
        typer.echo(f"error: imported at {done.revision}, but migrating it to head failed: "
                   f"{done.error}; it is not served: `tenantctl migrate {new.slug}`, then "
                   f"`tenantctl resume {new.slug}`", err=True)  # fmt: skip
        raise typer.Exit(1)


@app.command()
def clone(
    source: str,
    slug: str,
    name: Annotated[str | None, typer.Option(help="Display name (default: SOURCE's).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create tenant SLUG as a copy of SOURCE's rows: a staging copy, a bug to reproduce.

    One snapshot of SOURCE, through an export in a temporary directory; API keys stay behind."""
    import tempfile

    from tenantsvc.tenancy.dumps import export_tenant, import_tenant
    from tenantsvc.tenancy.slugs import validate_slug

    async def work() -> None:
        validate_slug(slug)
        with tempfile.TemporaryDirectory(prefix="tenantctl-clone-") as directory:
            file = Path(directory) / f"{source}.tar"
            async with engine_for_cli() as engine:
                await export_tenant(engine, source, file)
                done = await import_tenant(engine, file, slug, name)
        _report_import(done, f"tenant {source}", as_json)

    run(work)
