"""A command over several tenants (``tenantctl drop a b c``): one process, each tenant its own
unit of work in order, printed as it finishes; the first failure stops the rest and names them."""

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import typer

from cli.common import engine_for_cli, fail, print_json, run

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


class PartlyDone(Exception):
    """A step of a batch that failed after part of it held (its message says which part)."""


def one_by_one(
    slugs: list[str],
    step: "Callable[[AsyncEngine, str], Awaitable[tuple[dict[str, object], str]]]",
    as_json: bool,
    done: str,
    check: "Callable[[AsyncEngine], Awaitable[None]] | None" = None,
) -> None:
    """``step`` for each slug in order, in one process, each as its own unit: the first failure
    stops the rest and names them; those before it stay ``done``, and were printed as each
    finished (a key already made is never lost). ``check`` runs first, before any step. JSON:
    one object for one slug; for several, a line of JSON each."""
    twice = sorted({slug for slug in slugs if slugs.count(slug) > 1})
    if twice:
        raise fail(f"given twice: {', '.join(twice)}; nothing {done}")
    pending = list(slugs)

    async def work() -> None:
        async with engine_for_cli() as engine:
            if check is not None:
                await check(engine)
            for slug in slugs:
                try:
                    data, said = await step(engine, slug)
                except PartlyDone as exc:
                    pending.remove(slug)  # its message says what was done and what was not
                    raise fail(f"{exc}{not_done()}") from None
                pending.remove(slug)
                if as_json and len(slugs) == 1:
                    print_json(data)
                else:
                    typer.echo(json.dumps(data, default=str) if as_json else said)

    def not_done() -> str:
        if len(slugs) == 1 or not pending:
            return ""
        return f"; nothing {done}" if pending == slugs else f"; not {done}: {', '.join(pending)}"

    run(work, not_done)


async def all_known(engine: "AsyncEngine", slugs: list[str]) -> None:
    """Every slug of a batch is a tenant, before any is touched: a typo in the tenth name
    must not leave nine done. One slug is left to its step, which names it the same way."""
    if len(slugs) == 1:
        return
    from tenantsvc.tenancy.admin import list_tenants
    from tenantsvc.tenancy.errors import TenancyError

    async with engine.connect() as conn:
        known = {t.slug for t in await list_tenants(conn)}
    if unknown := [slug for slug in slugs if slug not in known]:
        raise TenancyError(f"unknown tenant(s): {', '.join(unknown)}")
