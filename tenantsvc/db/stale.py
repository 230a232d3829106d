"""Transactions the database refused and rolled back that can be run again: statements made
stale by a migration, deadlocks and serialization failures.

A deadlock or serialization failure (a migration's ALTER and an order locking the same tables
in another order, say) rolls its transaction back, and PostgreSQL's documentation asks the
client to run it again.

A migration that changes what a statement returns (a column widened, a type changed) makes
PostgreSQL refuse every statement prepared before it, on every pooled connection that holds
one ("cached plan must not change result type"). The refusal comes before the statement runs
and aborts its transaction, which is rolled back, so the request has changed nothing: it can
be served again from the start (``tenant_routes.py``). The driver cannot retry it itself
inside a transaction (asyncpg retries only outside one; SQLAlchemy documents the same).

Before that replay, the worker marks every connection's statements stale: the hot paths' own
statement cache (``db/session.py``) is dropped on each connection at its next checkout, so the
replay, wherever it lands, prepares afresh instead of failing again on another connection.
SQLAlchemy's cache, used by the other routes, does the same for itself on the first error.
"""

import time
from typing import Any

import asyncpg

from tenantsvc.db.errors import RUN_AGAIN, causes, sqlstate

ATTEMPTS = 3  # a request is served at most this often; then it is a 503 (retry shortly)
_STALE = (asyncpg.InvalidCachedStatementError, asyncpg.OutdatedSchemaCacheError)
_FRESH_AS_OF = "tenantsvc_statements_fresh_as_of"  # in the pool record's info
MARK_INTERVAL_SECONDS = 1.0
_stale_since = 0.0


def is_stale_statement(exc: BaseException) -> bool:
    return any(isinstance(cause, _STALE) for cause in causes(exc))


def is_replayable(exc: BaseException) -> bool:
    """Rolled back by the database before anything was committed, and worth running again."""
    return sqlstate(exc) in RUN_AGAIN or is_stale_statement(exc)


def mark_stale() -> None:
    """Every statement this worker prepared until now may be stale. At most once a second:
    each mark has every connection drop (and close on the server) all its cached statements,
    and a fleet-wide migration makes statements stale tenant after tenant. Between marks, a
    connection that meets a stale statement drops its own cache (asyncpg does), and the
    request is replayed."""
    global _stale_since
    now = time.monotonic()
    if now - _stale_since >= MARK_INTERVAL_SECONDS:
        _stale_since = now


def is_stale(connection_info: dict[Any, Any]) -> bool:
    """Marked stale since the connection last dropped its statements? No lookup until a first
    stale statement, and no coroutine: this runs on every hot checkout."""
    return bool(_stale_since) and connection_info.get(_FRESH_AS_OF, 0.0) < _stale_since


async def refresh(driver: Any, connection_info: dict[Any, Any]) -> None:
    """Drop the connection's cached statements (and type cache)."""
    await driver.reload_schema_state()
    connection_info[_FRESH_AS_OF] = time.monotonic()
