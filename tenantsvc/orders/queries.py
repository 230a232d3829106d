"""Order placement on the hot path, over a raw connection already in the tenant's transaction
(``deps.WriteConn``): that transaction is the unit of work, committed once at the request edge.

Placing an order is one statement: the buyer is checked, the products' rows are locked in id
order (two orders touching the same products queue instead of deadlocking), stock is taken only
where enough is left (it can never go below zero, however many requests race), and the order
and its lines are inserted only if every line got its stock. No rows back means the order was
refused; the request's rollback then undoes any stock already taken.
"""

from typing import Any

PLACE = """
WITH buyer AS (
    SELECT id FROM users WHERE id = $1
), wanted AS (
    SELECT * FROM unnest($2::bigint[], $3::int[]) AS w(id, quantity)
), locked AS (
    SELECT p.id FROM products p JOIN wanted w ON w.id = p.id
    WHERE p.deleted_at IS NULL AND EXISTS (SELECT 1 FROM buyer)
    ORDER BY p.id FOR UPDATE OF p
), taken AS (
    UPDATE products p SET stock = p.stock - w.quantity
    FROM wanted w JOIN locked l ON l.id = w.id
    WHERE p.id = w.id AND p.stock >= w.quantity
    RETURNING p.id, p.price_cents, w.quantity
), new_order AS (
    INSERT INTO orders (user_id)
    SELECT id FROM buyer WHERE (SELECT count(*) FROM taken) = $4
    RETURNING id, user_id, created_at
), lines AS (
    INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents)
    SELECT o.id, t.id, t.quantity, t.price_cents FROM new_order o CROSS JOIN taken t
)
SELECT o.id, o.user_id, o.created_at, t.id AS product_id, t.quantity,
       t.price_cents AS unit_price_cents
FROM new_order o CROSS JOIN taken t ORDER BY t.id
"""


async def place(conn: Any, user_id: int, quantities: dict[int, int]) -> list[Any]:
    """Take stock and write the order in one round trip; [] if it was refused."""
    ids = sorted(quantities)
    rows: list[Any] = await conn.fetch(PLACE, user_id, ids, [quantities[i] for i in ids], len(ids))
    return rows


async def user_exists(conn: Any, user_id: int) -> bool:
    return await conn.fetchval("SELECT 1 FROM users WHERE id = $1", user_id) is not None
