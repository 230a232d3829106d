"""What each worker served: the API keys it accepted, for their last use (before a rotation's
grace ends or a key is revoked: which clients still send it), and each tenant's requests, per
UTC day, reads and writes (to bill, to find the busy tenants of a fleet too big for a metrics
label each).

A write per request would put a registry write on every request's path. Each worker instead
collects in memory (a set insertion and a counter, 0.24 us per request) and writes once
per ``usage_flush_seconds`` in one transaction, stamped with the flush's time: a key's last use
is exact to within that interval, and requests served just before midnight UTC may count on the
next day. The rows live in tables of their own (shared migration s0007), so a flush neither
bumps the registry version nor reaches the audit trail. A flush that fails keeps what it held
for the next one (should the failure hide a commit that went through, those requests count
twice); the last flush runs at shutdown. Keys and tenants deleted since (a purge) are skipped.
"""

import logging
from collections import Counter

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.types import BigInteger

from tenantsvc.observability.metrics import ACTIVITY_FLUSHES
from tenantsvc.periodic import Every

log = logging.getLogger(__name__)

READS = frozenset({"GET", "HEAD", "OPTIONS"})
_IDS = ARRAY(BigInteger)

# Rows are taken in id order, so two workers flushing the same keys or tenants lock them in the
# same order.
_KEYS = text("""
    INSERT INTO tenantsvc.api_key_usage AS u (key_id, last_used_at)
    SELECT k.id, now() FROM tenantsvc.api_keys AS k WHERE k.id = ANY(:ids) ORDER BY k.id
    ON CONFLICT (key_id) DO UPDATE SET last_used_at = excluded.last_used_at
    WHERE u.last_used_at < excluded.last_used_at
""").bindparams(bindparam("ids", type_=_IDS))
_REQUESTS = text("""
    INSERT INTO tenantsvc.tenant_requests AS r (tenant_id, day, reads, writes)
    SELECT t.id, (now() AT TIME ZONE 'UTC')::date, n.reads, n.writes
    FROM unnest(:ids, :reads, :writes) AS n(id, reads, writes)
    JOIN tenantsvc.tenants AS t ON t.id = n.id ORDER BY t.id
    ON CONFLICT (tenant_id, day) DO UPDATE
    SET reads = r.reads + excluded.reads, writes = r.writes + excluded.writes
""").bindparams(*(bindparam(name, type_=_IDS) for name in ("ids", "reads", "writes")))


class Activity:
    def __init__(self, engine: AsyncEngine, flush_seconds: float) -> None:
        self._engine = engine
        self._keys: set[int] = set()
        self._requests: Counter[tuple[int, bool]] = Counter()  # (tenant id, a write?)
        self._flushes = Every(flush_seconds, self.flush, "activity flush")

    def served(self, tenant_id: int, key_id: int, method: str) -> None:
        self._keys.add(key_id)
        self._requests[tenant_id, method not in READS] += 1

    async def flush(self) -> int:
        """Write what was served since the last flush; returns how many requests."""
        if not self._keys:
            return 0
        keys, requests = self._keys, self._requests
        self._keys, self._requests = set(), Counter()
        try:
            async with self._engine.begin() as conn:
                await conn.execute(_KEYS, {"ids": sorted(keys)})
                await _record_requests(conn, requests)
        except BaseException:
            self._keys |= keys  # the next flush carries them
            self._requests.update(requests)
            ACTIVITY_FLUSHES.labels("failed").inc()
            raise
        ACTIVITY_FLUSHES.labels("ok").inc()
        return requests.total()

    def start(self) -> None:
        self._flushes.start()

    async def stop(self) -> None:
        await self._flushes.stop()
        try:
            await self.flush()
        except Exception:
            log.warning("recording activity at shutdown failed", exc_info=True)


async def _record_requests(conn: AsyncConnection, requests: Counter[tuple[int, bool]]) -> None:
    tenants = sorted({tenant_id for tenant_id, _ in requests})
    await conn.execute(_REQUESTS, {
        "ids": tenants,
        "reads": [requests[t, False] for t in tenants],
        "writes": [requests[t, True] for t in tenants],
    })  # fmt: skip
