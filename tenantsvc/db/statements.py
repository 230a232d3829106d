"""Per-tenant statement texts for the hot paths, so PostgreSQL keeps a plan per tenant.

A prepared statement's plan is tied to the search_path it was analysed under. With one text
shared by every tenant, a pooled connection that serves tenant A, then B, then A finds its plan
stale at nearly every execution and re-analyses and re-plans it: measured with pgbench on the
order statement, 2,000 transactions/s against 6,500 when the search_path does not change.

A comment naming the schema gives each tenant its own text, hence its own entry in asyncpg's
per-connection statement cache and its own server-side plan, reused whenever that tenant comes
back on that connection. The schema comes from the registry (never from the request), and is
checked to be a plain identifier before it is written into SQL, even as a comment.

Bounded per connection, where the plans live: each connection gives its own texts to the first
``capacity`` tenants it serves, sized so that their statements and the shared ones fit its
statement cache. Past that, tenants share the plain text on that connection (PostgreSQL
re-plans it for them) instead of thrashing the cache, where every miss would cost a prepare
round trip and every eviction a close. With the tenant-affine pool (``db/affinity.py``) a
connection serves mostly its home tenants, about tenants / pool size of them: a bound per
process would have left all but the first ``capacity`` tenants of a large fleet re-planning on
every call (W3 over 10,000 tenants: planning was a fifth of the server's CPU).
"""

import re
from typing import Any

# The distinct texts every tenant runs through TenantConnection (see */queries.py). Orders sent
# with an Idempotency-Key run three more (idempotency/store.py), left out of this count so that
# a fleet without keys keeps 1,023 tenants per connection: where all the admitted tenants of a
# connection send keys, its cache fills, and asyncpg's LRU closes the least recently used
# tenants' statements, prepared again (one round trip) when next used. On the shared texts
# instead, a replay's claim was re-planned at nearly every call: replays ran at 1.07 times plain
# W4 against 1.38 (bench/README.md, idempotency).
HOT_STATEMENTS = 4
_PLAIN_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_ADMITTED = "tenantsvc_own_texts"  # in the pool record's info: cleared when it reconnects


class _Admitted:
    """The tenants with their own texts on one connection: those it serves as their home
    connection, and guests (tenants it served while their home was busy, or from a plain
    pool)."""

    __slots__ = ("guests", "homes")

    def __init__(self) -> None:
        self.homes: set[str] = set()
        self.guests: set[str] = set()

    def __contains__(self, schema: str) -> bool:
        return schema in self.homes or schema in self.guests

    def __len__(self) -> int:
        return len(self.homes) + len(self.guests)


class TenantStatements:
    def __init__(self, statement_cache_size: int) -> None:
        # Room for the shared texts too, so the cache's LRU never evicts an admitted tenant's.
        self.capacity = max(0, statement_cache_size // HOT_STATEMENTS - 1)
        self._prefixes: dict[str, str] = {}

    def prefix(self, schema: str, connection_info: dict[Any, Any], at_home: bool = False) -> str:
        """The comment that makes ``schema``'s texts its own on this connection, or "" (the
        shared texts) once the connection has admitted ``capacity`` other tenants.

        A full connection still admits a tenant it serves as its home, in place of a guest:
        otherwise the random tenants a connection serves while the pool is cold would keep its
        own home tenants re-planning for good. The evicted guest's statements age out of
        asyncpg's LRU cache, which closes them on the server."""
        admitted: _Admitted | None = connection_info.get(_ADMITTED)
        if admitted is None:
            admitted = connection_info[_ADMITTED] = _Admitted()
        if schema in admitted:
            return self._prefixes[schema]
        if len(admitted) >= self.capacity:
            if not (at_home and admitted.guests):
                return ""
            admitted.guests.pop()
        prefix = self._prefixes.get(schema)
        if prefix is None:
            prefix = self._prefixes[schema] = tenant_prefix(schema)
        (admitted.homes if at_home else admitted.guests).add(schema)
        return prefix


def tenant_prefix(schema: str) -> str:
    """The comment that gives ``schema`` texts of its own."""
    if not _PLAIN_IDENTIFIER.fullmatch(schema):
        raise ValueError(f"not a plain schema name: {schema!r}")
    return f"/* {schema} */ "


class TenantConnection:
    """The raw asyncpg connection of a tenant's transaction, sending that tenant's texts."""

    __slots__ = ("_prefix", "driver")

    def __init__(self, driver: Any, prefix: str) -> None:
        self.driver = driver
        self._prefix = prefix

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        rows: list[Any] = await self.driver.fetch(self._prefix + sql, *args)
        return rows

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self.driver.fetchval(self._prefix + sql, *args)
