"""A database switched read-only for a block, as an operator does for maintenance."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine


async def _switch(engine: AsyncEngine, url: str, on: bool) -> None:
    setting = f"default_transaction_read_only = {'on' if on else 'off'}"
    async with engine.begin() as conn:
        await conn.execute(text("SET TRANSACTION READ WRITE"))  # whatever the default is now
        await conn.execute(text(f'ALTER DATABASE "{make_url(url).database}" SET {setting}'))


@asynccontextmanager
async def read_only_database(engine: AsyncEngine, url: str) -> AsyncIterator[None]:
    """The database of ``url`` (through ``engine``, its owner's) read-only for sessions that
    start in the block: set, and switched back whatever the block does."""
    await _switch(engine, url, on=True)
    try:
        yield
    finally:
        await _switch(engine, url, on=False)
