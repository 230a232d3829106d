"""``tenantctl doctor``: server version, pool sizing, tenant cap, timeouts, search_path,
migration heads, invalid indexes, keys about to expire."""

import typer

from cli.common import JsonOpt, engine_for_cli, print_json, run
from tenantsvc.wording import shown

app = typer.Typer()


@app.command()
def doctor(as_json: JsonOpt = False) -> None:
    """Check the deployment; exits non-zero when a check fails."""
    from tenantsvc.settings import get_settings
    from tenantsvc.tenancy.doctor import run_checks

    async def work() -> list[dict[str, str]]:
        async with engine_for_cli() as engine, engine.connect() as conn:
            checks = await run_checks(conn, get_settings())
        return [{"check": c.name, "status": c.status, "detail": c.detail} for c in checks]

    checks = run(work)
    if as_json:
        print_json(checks)
    else:
        marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
        for c in checks:
            typer.echo(f"{marks[c['status']]}  {c['check']}: {shown(c['detail'])}")
    if any(c["status"] == "fail" for c in checks):
        raise typer.Exit(1)
