"""What each worker served: the API keys it accepted, for their last use (before a rotation's
grace ends or a key is revoked: which clients still send it), and each tenant's requests, per
UTC day, reads and writes (to bill, to find the busy tenants of a fleet too big for a metrics
label each).

A write per request would put a registry write on every request's path. Each worker instead
collects in memory (a set insertion and a counter) and writes once per ``usage_flush_seconds``
in one transaction. A key's last use is stamped with the flush's time, exact to within that
interval. A request counts on the UTC day the worker's clock read when it was served (stamped
with the flush's time instead, a batch that straddled midnight billed its last seconds of a
day to the next one). The rows live in tables of their own (shared migration s0007), so a
flush neither bumps the registry version nor reaches the audit trail. Keys and tenants deleted
since (a purge) are skipped; the last flush runs at shutdown, tried again if it fails.

Counted once, whatever fails (requests per day are billing data). A flush that fails before
committing surely wrote nothing: what it held goes back into the next one. A flush that fails
while committing may have committed (the connection died before the answer came back): what it
held stays in doubt, under the flush's id, which every flush writes in its own transaction
(shared migration s0009). The next flush writes a batch in doubt only if its id is absent.
"""

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.types import BigInteger, Date

from tenantsvc.observability.metrics import ACTIVITY_FLUSHES
from tenantsvc.periodic import Every

log = logging.getLogger(__name__)
SHUTDOWN_PAUSES = (0.2, 1.0)  # between the last flush's attempts: three in all
SHUTDOWN_SECONDS = 10.0  # at most, whatever the database does

READS = frozenset({"GET", "HEAD", "OPTIONS"})
_IDS = ARRAY(BigInteger)
_DAY_SECONDS = 86400
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
# What a worker counts a request under: (tenant id, UTC day as days since 1970, a write?).
_Served = tuple[int, int, bool]

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
    SELECT t.id, n.day, n.reads, n.writes
    FROM unnest(:ids, :days, :reads, :writes) AS n(id, day, reads, writes)
    JOIN tenantsvc.tenants AS t ON t.id = n.id ORDER BY t.id, n.day
    ON CONFLICT (tenant_id, day) DO UPDATE
    SET reads = r.reads + excluded.reads, writes = r.writes + excluded.writes
""").bindparams(
    *(bindparam(name, type_=_IDS) for name in ("ids", "reads", "writes")),
    bindparam("days", type_=ARRAY(Date)),
)


_NEW_FLUSHES = text("""
    INSERT INTO tenantsvc.activity_flushes (id) SELECT unnest(:ids)
    ON CONFLICT (id) DO NOTHING RETURNING id
""").bindparams(bindparam("ids", type_=ARRAY(UUID(as_uuid=True))))
_PRUNE = text("DELETE FROM tenantsvc.activity_flushes WHERE flushed_at < now() - interval '7 days'")


@dataclass
class _Batch:
    """What a worker served between two flushes, and the id its flush commits under."""

    keys: set[int] = field(default_factory=set)
    requests: Counter[_Served] = field(default_factory=Counter)
    id: uuid.UUID = field(default_factory=uuid.uuid4)

    def add(self, other: "_Batch") -> None:
        self.keys |= other.keys
        self.requests.update(other.requests)


class Activity:
    def __init__(
        self, engine: AsyncEngine, flush_seconds: float, clock: Callable[[], float] = time.time
    ) -> None:
        self._engine = engine
        self._clock = clock  # epoch seconds: what a request's UTC day is read from
        self._keys: set[int] = set()  # what is served goes here, then into a batch at the flush
        self._requests: Counter[_Served] = Counter()
        self._in_doubt: list[_Batch] = []  # flushes that failed while committing
        self._flushes = Every(flush_seconds, self.flush, "activity flush")

    def served(self, tenant_id: int, key_id: int, method: str) -> None:
        self._keys.add(key_id)
        day = int(self._clock() // _DAY_SECONDS)
        self._requests[tenant_id, day, method not in READS] += 1

    async def flush(self) -> int:
        """Write what was served since the last flush, and the batches in doubt that did not
        commit; returns how many requests were written."""
        batch = _Batch(self._keys, self._requests)
        self._keys, self._requests = set(), Counter()
        batches = [*self._in_doubt, batch] if batch.keys else self._in_doubt
        if not batches:
            return 0
        committing = False
        try:
            async with self._engine.connect() as conn:
                await conn.begin()
                written = await _write(conn, batches)
                committing = True
                await conn.commit()
        except BaseException as exc:
            if committing:  # every batch it sent, the new one included
                self._in_doubt = batches
            else:
                self._keys |= batch.keys  # surely not written: the next flush carries it
                self._requests.update(batch.requests)
            if not isinstance(exc, asyncio.CancelledError):  # not a failure: the app stopping
                ACTIVITY_FLUSHES.labels("failed").inc()
            raise
        self._in_doubt = []
        ACTIVITY_FLUSHES.labels("ok").inc()
        return written

    def start(self) -> None:
        self._flushes.start()

    async def stop(self) -> None:
        """The last flush, tried again if it fails (within ``SHUTDOWN_SECONDS``): after it
        nothing is left to carry what a failed flush held, or to settle a flush in doubt, which
        a retry does as any next flush would, by its id."""
        await self._flushes.stop()
        try:
            async with asyncio.timeout(SHUTDOWN_SECONDS):
                for pause in SHUTDOWN_PAUSES:
                    try:
                        await self.flush()
                        return
                    except Exception:
                        log.warning("recording activity at shutdown failed; trying again")
                        await asyncio.sleep(pause)
                await self.flush()
        except Exception:
            uncounted = self._requests.total() + sum(b.requests.total() for b in self._in_doubt)
            log.warning("recording activity at shutdown failed: up to %d requests uncounted",
                        uncounted, exc_info=True)  # fmt: skip


async def _write(conn: AsyncConnection, batches: list[_Batch]) -> int:
    """The batches whose ids are new (the others committed before), as one."""
    new = set((await conn.execute(_NEW_FLUSHES, {"ids": [b.id for b in batches]})).scalars())
    await conn.execute(_PRUNE)
    merged = _Batch()
    for batch in batches:
        if batch.id in new:
            merged.add(batch)
    if merged.keys:
        await conn.execute(_KEYS, {"ids": sorted(merged.keys)})
        await _record_requests(conn, merged.requests)
    return merged.requests.total()


async def _record_requests(conn: AsyncConnection, requests: Counter[_Served]) -> None:
    rows = sorted({(tenant_id, day) for tenant_id, day, _ in requests})
    await conn.execute(_REQUESTS, {
        "ids": [tenant_id for tenant_id, _ in rows],
        "days": [date.fromordinal(_EPOCH_ORDINAL + day) for _, day in rows],
        "reads": [requests[tenant_id, day, False] for tenant_id, day in rows],
        "writes": [requests[tenant_id, day, True] for tenant_id, day in rows],
    })  # fmt: skip
