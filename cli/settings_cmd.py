"""``tenantctl settings``: what this deployment runs with, and where each value came from."""

import os
from typing import TYPE_CHECKING, Any

import typer

from cli.common import JsonOpt, hidden, print_json, print_table

if TYPE_CHECKING:
    from tenantsvc.settings import Settings

app = typer.Typer()


@app.command()
def settings(as_json: JsonOpt = False) -> None:
    """Each setting in effect, and whether the environment or the default gave it.

    Read as `tenantctl serve` reads them; passwords in URLs and the metrics token are never
    shown. Starts nothing and connects to nothing."""
    from tenantsvc.settings import Settings

    current = Settings()
    rows = [_row(current, name, value) for name, value in current.model_dump().items()]
    if as_json:
        print_json([{"setting": s, "value": v, "from": f} for s, v, f in rows])
        return
    print_table(("setting", "value", "from"), rows)


def _row(current: "Settings", name: str, value: Any) -> tuple[str, str, str]:
    variable = f"TENANTSVC_{name.upper()}"
    given = "environment" if variable in os.environ else "default"
    return variable, _unset(current, name) if value is None else hidden(name, value), given


def _unset(current: "Settings", name: str) -> str:
    """What an unset value means, where it is the service's own choice rather than none."""
    if name == "database_url":
        return "unset: the embedded server"
    if name == "tenant_max_connections":
        return f"unset: {current.tenant_connection_cap} (3/4 of the pool)"
    return "unset"
