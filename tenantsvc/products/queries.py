"""Product reads on the hot path, over a raw connection already in the tenant's transaction
(``deps.ReadConn``). Plain SQL, unqualified names: the transaction's search_path picks the
tenant."""

from typing import Any

# Keyset: an index seek on products_live_id_idx (id WHERE deleted_at IS NULL) at any depth.
# ``name::text``: the statement's result type stays the same when a migration widens the
# column (varchar(200) to varchar(300), or to text), so the prepared statement survives it
# instead of failing on every connection that holds it (db/stale.py). Measured while
# migrate-all widened the names of 1,000 tenants under W3 (bench/live_migration.py probes):
# p99 82-85 ms with the cast, 278-493 ms without.
LIVE_PAGE = (
    "SELECT id, name::text AS name, price_cents, stock, created_at, deleted_at FROM products "
    "WHERE deleted_at IS NULL AND id > $1 ORDER BY id LIMIT $2"
)


async def live_page(conn: Any, after_id: int, limit: int) -> list[Any]:
    rows: list[Any] = await conn.fetch(LIVE_PAGE, after_id, limit)
    return rows


async def live_product_exists(conn: Any, product_id: int) -> bool:
    found = await conn.fetchval(
        "SELECT 1 FROM products WHERE id = $1 AND deleted_at IS NULL", product_id
    )
    return found is not None
