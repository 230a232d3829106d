"""Moving a tenant's rows through a file: export one, import it as a new tenant."""

import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated

import typer

from cli.common import JsonOpt, engine_for_cli, fail, print_json, run
from cli.completion import Slug, known_slugs

if TYPE_CHECKING:
    from tenantsvc.tenancy.dumps import Imported

app = typer.Typer()


def _counts(rows: dict[str, int]) -> str:
    return ", ".join(f"{table} {n}" for table, n in rows.items())


STDIO = Path("-")


@app.command("export")
def export_(
    slug: Slug,
    file: Annotated[Path, typer.Argument(help="A new file, or - for stdout (a pipe).")],
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
    """Write a tenant's rows to FILE, from one consistent snapshot (API keys stay behind).

    With FILE `-` the export goes to stdout, and what it reports to stderr:
    `tenantctl export acme - | ssh other tenantctl import - acme`."""
    from tenantsvc.settings import get_settings
    from tenantsvc.tenancy.dumps import export_tenant
    from tenantsvc.tenancy.locking import LockPolicy

    piped = file == STDIO
    if piped and sys.stdout.isatty():
        raise fail("not writing an export to a terminal: redirect stdout, or name a file")
    if not piped and file.exists():
        raise fail(f"{file} exists: choose a new file (an export never overwrites)")
    if not file.parent.is_dir():
        raise fail(f"{file.parent} is not a directory")

    async def work() -> None:
        async with engine_for_cli() as engine:
            hold = LockPolicy.from_settings(get_settings()) if hold_writes else None
            done = await export_tenant(engine, slug, sys.stdout.buffer if piped else file, hold)
        if as_json:
            print_json({"slug": done.slug, "revision": done.revision, "rows": done.rows,
                        "file": str(file)}, err=piped)  # fmt: skip
        else:
            typer.echo(f"exported {done.slug} at {done.revision} to {file}: "
                       f"{_counts(done.rows)}", err=piped)  # fmt: skip

    run(work)  # the file appears whole, or not at all (tenantsvc/durable.py)


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="An export, or - for stdin (a pipe).")],
    slug: str,
    name: Annotated[str | None, typer.Option(help="Display name (default: the file's).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create tenant SLUG from an export, then migrate it to head.

    At the file's revision with its rows, atomically; prints the new tenant's first API key.
    FILE `-` reads the export from stdin (kept in a temporary file: its manifest comes last)."""
    from tenantsvc.tenancy.dumps import import_tenant
    from tenantsvc.tenancy.slugs import validate_slug

    piped = file == STDIO
    if piped and sys.stdin.isatty():
        raise fail("no export on stdin (it is a terminal): pipe one in, or name a file")

    async def work() -> None:
        validate_slug(slug)
        with _spooled_stdin() if piped else nullcontext(file) as source:
            async with engine_for_cli() as engine:
                done = await import_tenant(engine, source, slug, name)
        _report_import(done, "stdin" if piped else str(file), as_json)

    run(work)


@contextmanager
def _spooled_stdin() -> Iterator[IO[bytes]]:
    """stdin in a temporary file: reading a tar's manifest (its last member) first needs a
    file it can seek in, which a pipe is not."""
    from tenantsvc.durable import writing_to

    with tempfile.TemporaryFile(prefix="tenantctl-import-") as spool:
        with writing_to(tempfile.gettempdir()):  # a full disk there, not the database
            shutil.copyfileobj(sys.stdin.buffer, spool)
        spool.seek(0)
        yield spool


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
    source: Annotated[str, typer.Argument(autocompletion=known_slugs, show_default=False)],
    slug: str,
    name: Annotated[str | None, typer.Option(help="Display name (default: SOURCE's).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create tenant SLUG as a copy of SOURCE's rows: a staging copy, a bug to reproduce.

    One snapshot of SOURCE, through an export in a temporary directory; API keys stay behind."""
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
