"""``tenantctl``: the platform team's CLI. Commands import heavy modules only when they run,
so ``tenantctl --help`` and quick commands start fast."""

import typer

from cli import doctor, keys, migrate, serve, tenants

app = typer.Typer(
    name="tenantctl",
    help="Operate tenantsvc: tenants, API keys, migrations, the server.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
for sub in (tenants.app, migrate.app, doctor.app, serve.app):
    app.registered_commands.extend(sub.registered_commands)
app.add_typer(keys.app, name="keys")

if __name__ == "__main__":
    app()
