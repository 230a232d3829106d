"""asyncpg itself, for tests that must see the server as a given login sees it (no pool, no
tenant transaction, no SQLAlchemy in between)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url


@asynccontextmanager
async def raw_connection(url: str, **changes: Any) -> AsyncIterator[asyncpg.Connection]:
    """A connection to an SQLAlchemy ``url``, with ``changes`` to it (a user, a password)."""
    dsn = make_url(url).set(drivername="postgresql", **changes)
    conn = await asyncpg.connect(dsn.render_as_string(hide_password=False))
    try:
        yield conn
    finally:
        await conn.close()
