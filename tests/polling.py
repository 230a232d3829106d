"""Waiting in tests for something another task or process brings about, with a deadline
that names what never happened."""

import asyncio
import time
from collections.abc import Awaitable, Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


async def until(
    check: Callable[[], Awaitable[object]], never: str, seconds: float = 10, pause: float = 0.02
) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, never
        await asyncio.sleep(pause)


async def until_sql(engine: AsyncEngine, sql: str, never: str, seconds: float = 10) -> None:
    """Until ``sql`` (one value) is true, read each time on a connection of its own."""

    async def check() -> object:
        async with engine.connect() as conn:
            return await conn.scalar(text(sql))

    await until(check, never, seconds)


async def until_waiting(engine: AsyncEngine, relation: str, never: str, count: int = 1) -> None:
    """Until ``count`` sessions wait for a lock on ``relation`` (schema-qualified): what a test
    of blocked work must see before it acts on the blocked, instead of a pause."""
    waiting = (f"SELECT count(*) = {count} FROM pg_locks WHERE NOT granted "
               f"AND relation = '{relation}'::regclass")  # fmt: skip
    await until_sql(engine, waiting, never)
