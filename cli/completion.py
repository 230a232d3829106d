"""Tenant slugs for the shell's TAB (`tenantctl --install-completion`): `tenantctl show ac<TAB>`.

A TAB must answer at once and never change anything, so this reads the registry straight
through asyncpg with a two-second limit, and starts no embedded server: with no URL set it
uses the embedded one only while it runs (`make run`). Any failure completes nothing.
"""

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer

_SLUGS = "SELECT slug FROM tenantsvc.tenants WHERE starts_with(slug, $1) ORDER BY slug LIMIT 500"


def known_slugs(incomplete: str) -> list[str]:
    dsn = _dsn()
    if dsn is None:
        return []
    try:
        return asyncio.run(asyncio.wait_for(_slugs(dsn, incomplete), 2))
    except Exception:  # a TAB prints no traceback, whatever the database says
        return []


async def _slugs(dsn: str, incomplete: str) -> list[str]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return [row["slug"] for row in await conn.fetch(_SLUGS, incomplete)]
    finally:
        await conn.close()


def _dsn() -> str | None:
    url = os.environ.get("TENANTSVC_DATABASE_URL")
    if url:
        scheme, _, rest = url.partition("://")
        return f"postgresql://{rest}" if scheme.startswith("postgres") else None
    data = Path(os.environ.get("TENANTSVC_EMBEDDED_DATA_DIR", ".tenantsvc/pgdata")).resolve()
    running = (data / "postmaster.pid").exists()  # the embedded server listens in its data dir
    return f"postgresql://postgres@/postgres?host={data}" if running else None


Slug = Annotated[str, typer.Argument(metavar="SLUG", autocompletion=known_slugs,
                                     show_default=False)]  # fmt: skip
