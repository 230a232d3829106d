"""The tenant-scoped transaction: the only place a tenant reaches SQL.

``set_config('search_path', <schema>, true)`` is transaction-local: it ends with COMMIT or
ROLLBACK, so a pooled connection (or a PgBouncer server connection) never carries a tenant into
the next transaction. The schema comes from the registry, never from request input.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import PoolProxiedConnection, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.util.concurrency import greenlet_spawn

from tenantsvc.db.affinity import at_home, prefer
from tenantsvc.db.engine import create_engine, statement_cache_size
from tenantsvc.db.fairness import TenantSlots
from tenantsvc.db.replicas import Replica, ReplicaRouter
from tenantsvc.db.stale import is_stale, refresh
from tenantsvc.db.statements import TenantConnection, TenantStatements
from tenantsvc.settings import Settings
from tenantsvc.tenancy.ddl import identifier

# The tenant's schema, then the session's temporary schema: PostgreSQL looks there first
# unless the search_path names it, so a temporary table one transaction left on a pooled
# connection would otherwise shadow the next tenant's table of that name.
TEMP_LAST = ", pg_temp"
_PATH = f"quote_ident(:schema) || '{TEMP_LAST}'"  # tenant_search_path, spelt in SQL
SET_TENANT = text(f"SELECT set_config('search_path', {_PATH}, true)")
# And the tenant's role (tenancy/roles.py), transaction-local too: ``set_config('role', ...)``
# is ``SET LOCAL ROLE``.
SET_TENANT_AND_ROLE = text(
    f"SELECT set_config('search_path', {_PATH}, true), set_config('role', :role, true)"
)
# Planner settings of the hot transactions (*/queries.py), transaction-local like the
# search_path and sent in the same round trip as BEGIN. Those statements are index seeks by id
# whatever their parameters, so:
# - one generic plan per tenant and connection serves every call; otherwise PostgreSQL plans
#   the first five calls of each (tenant, connection) pair afresh, thousands of plans per
#   worker (0.8 ms each for the order statement; its server ceiling with per-tenant texts,
#   pgbench: 3,466 tps with custom plans, 4,467 with generic);
# - no sequential scans: a generic plan guesses 100 rows for an unnested parameter list and
#   would rather scan a small table whole than look up the one or two products of an order.
HOT_SETTINGS = {"plan_cache_mode": "force_generic_plan", "enable_seqscan": "off"}
BEGIN_HOT = "BEGIN;" + "".join(f" SET LOCAL {k} = {v};" for k, v in HOT_SETTINGS.items())


def tenant_search_path(schema: str) -> str:
    """A tenant transaction's search_path: its schema, then ``pg_temp``."""
    return f"{identifier(schema)}{TEMP_LAST}"


def local_search_path_sql(schema: str) -> str:
    """``set_config('search_path', schema, true)`` without a query to plan and a row to send
    back."""
    return f"SET LOCAL search_path TO {tenant_search_path(schema)};"


def local_role_sql(role: str | None) -> str:
    """The tenant's own role for the transaction (``tenancy/roles.py``); none: nothing."""
    return f" SET LOCAL ROLE {identifier(role)};" if role else ""


def hot_begin_sql(schema: str, role: str | None) -> str:
    """BEGIN, the planner settings, the tenant's transaction-local search_path and role: one
    round trip."""
    return f"{BEGIN_HOT} {local_search_path_sql(schema)}{local_role_sql(role)}"


class Database:
    """The engines and session factories, built in the app's lifespan (not at import)."""

    def __init__(self, settings: Settings) -> None:
        self.engine: AsyncEngine = create_engine(settings)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        self.statements = TenantStatements(statement_cache_size(settings))
        self.slots = TenantSlots(settings.tenant_connection_cap, settings.pool_timeout_seconds)
        replicas = []
        for i, url in enumerate(settings.replica_urls):
            engine = create_engine(settings, url)
            maker = async_sessionmaker(engine, expire_on_commit=False)
            replicas.append(Replica(f"replica{i}", engine, maker))
        self.router = ReplicaRouter(
            self.engine,
            replicas,
            max_lag_bytes=settings.replica_max_lag_bytes,
            wait_seconds=settings.replica_wait_ms / 1000,
            check_seconds=settings.replica_check_seconds,
        )

    @property
    def has_replicas(self) -> bool:
        return bool(self.router.replicas)

    def engines(self) -> dict[str, AsyncEngine]:
        return {"primary": self.engine, **{r.name: r.engine for r in self.router.replicas}}

    async def start(self) -> None:
        await self.router.start()

    async def dispose(self) -> None:
        await self.router.stop()
        for engine in self.engines().values():
            await engine.dispose()


@asynccontextmanager
async def tenant_session(
    sessionmaker: async_sessionmaker[AsyncSession], schema: str, role: str | None
) -> AsyncIterator[AsyncSession]:
    """One transaction in ``schema`` (as ``role``, when the tenant has one): committed when
    the block ends, rolled back on error."""
    async with sessionmaker() as session, session.begin():
        with prefer(schema):  # the first statement checks a connection out
            await enter_tenant(session, schema, role)
        yield session


async def enter_tenant(session: AsyncSession, schema: str, role: str | None) -> None:
    """The session's transaction takes the tenant's search_path, and its role when it has one
    (both transaction-local)."""
    if role is None:
        await session.execute(SET_TENANT, {"schema": schema})
    else:
        await session.execute(SET_TENANT_AND_ROLE, {"schema": schema, "role": role})


@asynccontextmanager
async def tenant_connection(
    engine: AsyncEngine, schema: str, statements: TenantStatements, role: str | None
) -> AsyncIterator[TenantConnection]:
    """The pooled connection's raw asyncpg connection, inside one transaction of ``schema``,
    for the hottest paths: BEGIN and the transaction-local search_path travel in one round
    trip, no ORM session is built, and the tenant's own statement texts keep its plans.

    A connection only goes back to the pool after COMMIT, or after a ROLLBACK that answered.
    Otherwise (the server went away, the request was cancelled mid-statement) it is closed and
    its pool slot marked for a fresh connection: its state is unknown, and it must never carry
    an open transaction, or a dead socket, to the next request.
    """
    async with pooled_connection(engine, schema) as fairy:
        driver: Any = fairy.driver_connection
        if is_stale(fairy.info):
            await refresh(driver, fairy.info)
        try:
            await driver.execute(hot_begin_sql(schema, role))
        except BaseException:
            _discard(fairy, driver)
            raise
        try:
            prefix = statements.prefix(schema, fairy.info, at_home(fairy.info))
            yield TenantConnection(driver, prefix)
        except Exception:
            await _rollback_or_discard(fairy, driver)
            raise
        except BaseException:
            _discard(fairy, driver)
            raise
        try:
            await driver.execute("COMMIT")
        except BaseException:
            _discard(fairy, driver)
            raise


@asynccontextmanager
async def pooled_connection(
    engine: AsyncEngine, schema: str | None = None
) -> AsyncIterator[PoolProxiedConnection]:
    """A pool checkout without SQLAlchemy's Connection objects: one greenlet hop out and one
    back in, where ``engine.connect()`` + ``get_raw_connection()`` + close take three. With a
    schema, the tenant's home connection when it is idle (``db/affinity.py``)."""
    with prefer(schema):
        fairy = await engine.raw_connection()
    try:
        yield fairy
    finally:
        # Shielded: a cancelled request still returns (or discards) its connection.
        await asyncio.shield(greenlet_spawn(fairy.close))


def _discard(fairy: Any, driver: Any) -> None:
    """Synchronous on purpose: it must work while the task is being cancelled."""
    driver.terminate()
    fairy.invalidate(soft=True)


async def _rollback_or_discard(fairy: Any, driver: Any) -> None:
    try:
        await driver.execute("ROLLBACK")
    except BaseException:
        _discard(fairy, driver)
