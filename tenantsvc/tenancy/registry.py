"""The in-process tenant registry: slug -> schema, status and key digests.

Each worker holds a full snapshot and polls one counter row (bumped by triggers on every
registry change) every ``registry_poll_seconds``; only when it moved is the snapshot reloaded.
Request routing therefore costs no database round trip, unknown slugs never reach the
database, and a suspension or key revocation stops being served within one poll interval on
every worker. Polling works behind PgBouncer in transaction mode, where LISTEN does not.

A key's expiry changes no row, so no counter: the snapshot remembers when its first key
expires, and the first poll past that instant reloads it (the expired key left out by the
database's clock; the worker's decides when to reload, so clocks apart delay it by as much).
An expired key is refused within one poll interval too, and the requests' path checks no
clock.
"""

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from typing import NamedTuple

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantsvc.periodic import Every
from tenantsvc.problems import database_unavailable
from tenantsvc.tenancy.errors import first_line
from tenantsvc.tenancy.models import ApiKeyRow, RegistryStateRow, TenantRow

log = logging.getLogger(__name__)
_VERSION_SQL = select(RegistryStateRow.version).where(RegistryStateRow.id == 1)
_TENANTS_SQL = select(
    TenantRow.id, TenantRow.slug, TenantRow.schema_name, TenantRow.status, TenantRow.role_name
)
_KEYS_SQL = (
    select(
        ApiKeyRow.key_hash,
        TenantRow.slug,
        ApiKeyRow.id,
        func.extract("epoch", ApiKeyRow.expires_at),
    )
    .join(TenantRow, TenantRow.id == ApiKeyRow.tenant_id)
    .where(ApiKeyRow.revoked_at.is_(None))
    .where(or_(ApiKeyRow.expires_at.is_(None), ApiKeyRow.expires_at > func.now()))
)


@dataclass(frozen=True, slots=True)
class Tenant:
    id: int
    slug: str
    schema: str
    status: str
    role: str | None = None  # its transactions run as this database role (roles.py)


class KeyOwner(NamedTuple):
    slug: str
    key_id: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int = -1
    tenants: dict[str, Tenant] = field(default_factory=dict)
    key_owners: dict[str, KeyOwner] = field(default_factory=dict)  # by the key's digest
    # (X-Tenant-ID, Authorization) -> the tenant and key they were verified as, under this
    # snapshot only: a new snapshot (a key revoked, a tenant suspended) starts empty. Verified
    # pairs only, so its size is bounded by the live keys (each in at most the 64 spellings of
    # "Bearer" and one space; a key after more spaces is verified afresh each time, or one key
    # could fill it), whatever clients send.
    verified: dict[tuple[str, str], tuple[Tenant, int]] = field(default_factory=dict)
    first_expiry: float = math.inf  # epoch seconds: past it, a key here has expired

    @property
    def outlived(self) -> bool:
        return time.time() >= self.first_expiry


class TenantRegistry:
    def __init__(self, engine: AsyncEngine, poll_seconds: float) -> None:
        self._engine = engine
        self._snapshot = Snapshot()
        self._lock = asyncio.Lock()
        self._last_check = 0.0
        self._poll = Every(poll_seconds, self.refresh, "registry poll")

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def get(self, slug: str) -> Tenant | None:
        return self._snapshot.tenants.get(slug)

    def key_owner(self, key_digest: str) -> KeyOwner | None:
        return self._snapshot.key_owners.get(key_digest)

    async def refresh(self, *, force: bool = False) -> None:
        """Reload the snapshot if the registry version moved (always, with ``force``)."""
        async with self._lock:
            await self._refresh_locked(force)

    async def refresh_on_miss(self) -> None:
        """Called when a slug or key is not in the snapshot, so a tenant or key created a
        moment ago is served at once. Concurrent misses share one check: a check that began
        after this miss arrived already answers it, so a flood of unknown slugs costs about
        one tiny query per round trip, not one per request."""
        arrived = time.monotonic()
        async with self._lock:
            if self._last_check < arrived:
                await self._refresh_locked(False)

    async def _refresh_locked(self, force: bool) -> None:
        self._last_check = time.monotonic()
        async with self._engine.connect() as conn:
            # One repeatable-read transaction: version, tenants and keys of one instant.
            await conn.execution_options(isolation_level="REPEATABLE READ")
            version = (await conn.execute(_VERSION_SQL)).scalar_one()
            unchanged = version == self._snapshot.version and not self._snapshot.outlived
            if unchanged and not force:
                return
            # all(): one fetch for every row, where iterating fetched each through the
            # driver's adapter (a 10,000-tenant reload holds the worker's loop for its length).
            tenants = {
                slug: Tenant(id_, slug, schema, status, role)
                for id_, slug, schema, status, role in (await conn.execute(_TENANTS_SQL)).all()
            }
            keys, expiries = {}, [math.inf]
            for digest, slug, key_id, expires in (await conn.execute(_KEYS_SQL)).all():
                keys[digest] = KeyOwner(slug, key_id)
                if expires is not None:
                    expiries.append(float(expires))
        self._snapshot = Snapshot(version, tenants, keys, first_expiry=min(expiries))

    async def start(self) -> None:
        """The snapshot, then the polls (while the database is away, the snapshot keeps being
        served). A worker that starts while the database is away (one replacing a worker that
        died during an outage, or a rolling restart's) starts without a snapshot, answers
        503s, and loads one at the first poll or request that reaches the database. Failing
        its startup stopped the whole server, the healthy workers with it, and nothing served
        once the database was back. ``serve`` checks the database before any worker starts:
        a deploy against one that is not there still fails at once."""
        try:
            await self.refresh(force=True)
        except Exception as exc:
            if not database_unavailable(exc):  # no registry tables, say: not an outage
                raise
            log.warning("the database is away at startup (%s): tenants are answered 503 "
                        "until it is back", first_line(exc))  # fmt: skip
        self._poll.start()

    async def stop(self) -> None:
        await self._poll.stop()
