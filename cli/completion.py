"""Tenant slugs for the shell's TAB (`tenantctl --install-completion`): `tenantctl show ac<TAB>`.

A TAB must answer at once and never change anything, so this reads the registry straight
through asyncpg with a two-second limit, and starts no embedded server: with no URL set it
uses the embedded one only while it runs (`make run`). Any failure, a bad setting included,
completes nothing.
"""

import asyncio
from typing import Annotated

import typer

_SLUGS = "SELECT slug FROM tenantsvc.tenants WHERE starts_with(slug, $1) ORDER BY slug LIMIT 500"


def known_slugs(incomplete: str) -> list[str]:
    try:
        dsn = _dsn()
        return [] if dsn is None else asyncio.run(asyncio.wait_for(_slugs(dsn, incomplete), 2))
    except Exception:  # a TAB prints no traceback, whatever the settings or database say
        return []


async def _slugs(dsn: str, incomplete: str) -> list[str]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return [row["slug"] for row in await conn.fetch(_SLUGS, incomplete)]
    finally:
        await conn.close()


def _dsn() -> str | None:
    """The settings' URL, or the embedded server's while it runs, as asyncpg takes it."""
    from tenantsvc.db.embedded import running_url
    from tenantsvc.settings import Settings

    settings = Settings()
    url = settings.database_url or running_url(settings.embedded_data_dir)
    return None if url is None else url.replace("postgresql+asyncpg://", "postgresql://", 1)


Slug = Annotated[str, typer.Argument(metavar="SLUG", autocompletion=known_slugs,
                                     show_default=False)]  # fmt: skip
Slugs = Annotated[list[str], typer.Argument(metavar="SLUG", autocompletion=known_slugs,
                                            show_default=False)]  # fmt: skip
