"""How a tenant migration waits for the tables it alters, so that it never stalls the tenant.

An ``ALTER TABLE`` needs its table's exclusive lock, and while it waits in the lock queue every
query that arrives after it waits behind it. One long transaction in a tenant (a report, a bulk
import, a session left open) would then stall all of that tenant's requests for as long as it
runs. So a migration waits for a lock ``lock_timeout_ms`` at most, rolls back whole (its tenant
untouched), pauses and tries again, ``retries`` times, and then gives that tenant up with an
error that says so, while the rest of the fleet goes on; a re-run resumes it. The requests'
``statement_timeout`` is not a migration's: building an index over a big tenant may take
minutes, so migrations have their own (none by default).
"""

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import Select, func, select

from tenantsvc.db.errors import DEADLOCK, sqlstate
from tenantsvc.settings import Settings
from tenantsvc.tenancy.errors import first_line
from tenantsvc.wording import counted

# The advisory lock namespace of tenant migrations ("ten"): a tenant's lock is (LOCK_CLASS, id).
LOCK_CLASS = 0x74656E
# And of slugs ("slg"): creating a tenant and purging one of the same slug take turns, so that
# a create always sees the purges before it (``provisioning.unused_schema``).
SLUG_LOCK_CLASS = 0x736C67


def slug_lock(slug: str) -> Select[tuple[None]]:
    """Held to the end of the transaction that runs it."""
    return select(func.pg_advisory_xact_lock(SLUG_LOCK_CLASS, func.hashtext(slug)))


T = TypeVar("T")

LOCK_NOT_AVAILABLE = "55P03"
MAX_PAUSE_SECONDS = 8.0


@dataclass(frozen=True, slots=True)
class LockPolicy:
    lock_timeout_ms: int = 1000  # 0: wait as long as it takes (PostgreSQL's default)
    retries: int = 5
    statement_timeout_ms: int = 0  # 0: none
    pause_seconds: float = 0.5  # before the first retry; doubles up to MAX_PAUSE_SECONDS

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: int | None) -> "LockPolicy":
        values = {
            "lock_timeout_ms": settings.migration_lock_timeout_ms,
            "retries": settings.migration_lock_retries,
            "statement_timeout_ms": settings.migration_statement_timeout_ms,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def settings_sql(self) -> str:
        """Transaction-local, like the search_path: they end with the migration."""
        return self.lock_timeout_sql() + (
            f"SET LOCAL statement_timeout = {int(self.statement_timeout_ms)};\n"
        )

    def lock_timeout_sql(self) -> str:
        """The lock wait alone, for work that keeps its own statement timeout (a purge)."""
        return f"SET LOCAL lock_timeout = {int(self.lock_timeout_ms)};\n"

    def pause(self, attempt: int) -> float:
        """Seconds before retry ``attempt`` (0-based), with jitter so that tenants given up
        together by one long transaction do not come back in step."""
        ceiling = min(MAX_PAUSE_SECONDS, self.pause_seconds * 2.0**attempt)
        return ceiling * random.uniform(0.5, 1.0)

    async def retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """``attempt()`` again after each lock conflict, ``retries`` times; a conflict after
        that raises ``LocksNotGranted`` (any other error goes up as it is). ``attempt`` must be
        one transaction, so that a conflict undoes all of it."""
        conflicts = 0
        while True:
            try:
                return await attempt()
            except Exception as exc:
                if not is_lock_conflict(exc):
                    raise
                conflicts += 1
                if conflicts > self.retries:
                    raise LocksNotGranted(conflicts, exc) from exc
            await asyncio.sleep(self.pause(conflicts - 1))

    def gave_up(self, exc: "LocksNotGranted", where: str = "this tenant") -> str:
        tries = counted(exc.attempts, "attempt")
        return (
            f"could not lock its tables in {tries} (lock timeout {self.lock_timeout_ms} ms; "
            f"last: {exc.last}); nothing changed in {where}: re-run "
            "to resume once the transaction holding them ends"
        )


class LocksNotGranted(Exception):
    """Every attempt of ``LockPolicy.retrying`` ended on a lock conflict: how many there were,
    and the last one's message."""

    def __init__(self, attempts: int, last: BaseException) -> None:
        self.attempts, self.last = attempts, first_line(last)
        super().__init__(self.last)


def is_lock_conflict(exc: BaseException) -> bool:
    """A lock timeout, or a deadlock with a request that locks the same tables in another
    order; asyncpg's error, bare (the compiled path) or wrapped by SQLAlchemy (Alembic's)."""
    return sqlstate(exc) in (LOCK_NOT_AVAILABLE, DEADLOCK)
