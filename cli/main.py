"""``tenantctl``: the platform team's CLI. Commands import heavy modules only when they run,
so ``tenantctl --help`` and quick commands start fast."""

import sys
from typing import Annotated

import typer
from pydantic import ValidationError

from cli import doctor, dumps, history, keys, migrate, psql, serve, settings_cmd, tenants
from cli.common import bad_settings

app = typer.Typer(
    name="tenantctl",
    help="Operate tenantsvc: tenants, API keys, migrations, the server.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
for sub in (
    tenants.app,
    history.app,
    dumps.app,
    psql.app,
    migrate.app,
    doctor.app,
    settings_cmd.app,
    serve.app,
):
    app.registered_commands.extend(sub.registered_commands)
app.add_typer(keys.app, name="keys")


def _version(asked: bool) -> None:
    """This build, and the migrations it carries: which heads a fleet it deploys reaches."""
    if asked:
        from tenantsvc import __version__
        from tenantsvc.tenancy.migrator import head

        typer.echo(f"tenantctl {__version__} (heads: tenant {head('tenant')}, "
                   f"shared {head('shared')})")  # fmt: skip
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_version,
            help="Show the version, and the migration heads this build carries.",
        ),
    ] = False,
) -> None:
    pass


def main() -> None:
    """The ``tenantctl`` command. A usage error (a missing argument, an unknown option, a
    value out of range) is one line on stderr and exit 2, like every other error's one line
    and exit 1, instead of a framed panel."""
    try:
        code = app(standalone_mode=False, prog_name="tenantctl")
    except typer.TyperException as exc:  # click's errors, as Typer ships them
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare command: its help, shown
            typer.echo(exc.format_message(), err=True)
        else:
            ctx = getattr(exc, "ctx", None)
            where = f" (see `{ctx.command_path} --help`)" if ctx else ""
            typer.echo(f"error: {exc.format_message()}{where}", err=True)
        code = exc.exit_code
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        code = 1
    except ValidationError as exc:  # settings read outside ``run`` (serve, psql)
        typer.echo(f"error: {bad_settings(exc)}", err=True)
        code = 1
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
