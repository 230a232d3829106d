"""Engine construction: the pool settings and the driver options PgBouncer needs."""

from typing import Any
from uuid import uuid4

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

from tenantsvc.db.affinity import affinity_pool
from tenantsvc.settings import Settings


def _statement_name() -> str:
    # PgBouncer in transaction mode may hand the next transaction another server connection,
    # where a reused statement name would collide or be missing; unique names cannot.
    return f"__asyncpg_{uuid4()}__"


def statement_cache_size(settings: Settings) -> int:
    """asyncpg's per-connection cache of prepared statements; none behind PgBouncer."""
    return 0 if settings.pgbouncer else settings.statement_cache_size


def timeouts(settings: Settings) -> dict[str, int]:
    """The server settings the service sets when it connects, in ms (0: none); behind
    PgBouncer they must come from the role (``tenantctl doctor`` checks)."""
    return {
        "statement_timeout": settings.statement_timeout_ms,
        "idle_in_transaction_session_timeout": settings.idle_in_transaction_timeout_ms,
    }


def connect_args(settings: Settings, application_name: str = "tenantsvc") -> dict[str, Any]:
    args: dict[str, Any] = {
        "server_settings": {"application_name": application_name},
        "statement_cache_size": statement_cache_size(settings),
        # asyncpg drops a cached statement 300 s after preparing it, however often it is used
        # since: every tenant's hot statements would be prepared again every five minutes on
        # every connection, each with a timer held until then. The cache's size bounds it.
        "max_cached_statement_lifetime": 0,
    }
    args["server_settings"] |= {name: str(ms) for name, ms in timeouts(settings).items() if ms}
    if settings.pgbouncer:
        # PgBouncer accepts only a few startup parameters (application_name is one of them);
        # the rest would be refused. The timeouts then come from the role or database.
        args["server_settings"] = {"application_name": application_name}
        args["prepared_statement_cache_size"] = 0
        args["prepared_statement_name_func"] = _statement_name
    return args


def pool_class(settings: Settings) -> type[AsyncAdaptedQueuePool]:
    """Tenant-affine unless turned off or behind PgBouncer, which hands each transaction
    whichever server connection it likes: there a home wait would only add latency."""
    if settings.pool_affinity and not settings.pgbouncer:
        return affinity_pool(settings.pool_home_wait_ms / 1000)
    return AsyncAdaptedQueuePool


def create_engine(
    settings: Settings, url: str | None = None, application_name: str = "tenantsvc"
) -> AsyncEngine:
    """``application_name`` names the sessions in pg_stat_activity, and the actor in the
    registry's audit trail (shared migration s0006)."""
    target = url or settings.database_url
    if target is None:
        raise ValueError("no database URL: set TENANTSVC_DATABASE_URL or start the embedded one")
    return create_async_engine(
        target,
        poolclass=pool_class(settings),
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.pool_timeout_seconds,
        pool_recycle=settings.pool_recycle_seconds,
        pool_pre_ping=settings.pool_pre_ping,
        connect_args=connect_args(settings, application_name),
        # A failed statement's error (logged with a 500) would carry its parameters: users'
        # emails and names, in logs that an erasure never reaches.
        hide_parameters=True,
    )
