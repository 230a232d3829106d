"""When each API key was last used: before a rotation's grace ends or a key is revoked, which
clients still send it.

A write per request would put a registry write on every request's path. Each worker instead
collects the ids of the keys it accepted and writes them once per ``key_usage_flush_seconds``
in one statement, stamped with the flush's time: exact to within that interval, for one set
insertion per request. The rows live in a table of their own (shared migration s0007), so a
flush neither bumps the registry version nor reaches the audit trail. A flush that fails keeps
its keys for the next one; the last flush runs at shutdown.
"""

import asyncio
import logging

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.types import BigInteger

log = logging.getLogger(__name__)

# Keys deleted since they were seen (a purged tenant's) drop out by the join. Rows are taken in
# id order, so two workers flushing overlapping keys lock them in the same order.
_RECORD = text("""
    INSERT INTO tenantsvc.api_key_usage AS u (key_id, last_used_at)
    SELECT k.id, now() FROM tenantsvc.api_keys AS k WHERE k.id = ANY(:ids) ORDER BY k.id
    ON CONFLICT (key_id) DO UPDATE SET last_used_at = excluded.last_used_at
    WHERE u.last_used_at < excluded.last_used_at
""").bindparams(bindparam("ids", type_=ARRAY(BigInteger)))


class KeyUsage:
    def __init__(self, engine: AsyncEngine, flush_seconds: float) -> None:
        self._engine = engine
        self._flush_seconds = flush_seconds
        self._seen: set[int] = set()
        self._task: asyncio.Task[None] | None = None

    def used(self, key_id: int) -> None:
        self._seen.add(key_id)

    async def flush(self) -> int:
        """Write the keys seen since the last flush; returns how many."""
        if not self._seen:
            return 0
        batch, self._seen = self._seen, set()
        try:
            async with self._engine.begin() as conn:
                await conn.execute(_RECORD, {"ids": sorted(batch)})
        except BaseException:
            self._seen |= batch  # the next flush carries them
            raise
        return len(batch)

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self._flush_seconds)
            try:
                await self.flush()
            except Exception:  # the database may be briefly away; the keys wait for the next
                log.warning("recording key usage failed", exc_info=True)

    def start(self) -> None:
        self._task = asyncio.create_task(self._flush_forever(), name="key-usage")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await self.flush()
        except Exception:
            log.warning("recording key usage at shutdown failed", exc_info=True)
