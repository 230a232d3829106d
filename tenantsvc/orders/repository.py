from typing import Any

from sqlalchemy import Row, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from tenantsvc.orders.models import Order

# Placing an order is one statement: the buyer is checked, the products' rows are locked in id
# order (two orders touching the same products queue instead of deadlocking), stock is taken
# only where enough is left (it can never go below zero, however many requests race), and the
# order and its lines are inserted only if every line got its stock. No rows back means the
# order was refused; the caller's rollback then undoes any stock already taken.
_PLACE = text(
    """
    WITH buyer AS (
        SELECT id FROM users WHERE id = :user_id
    ), wanted AS (
        SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:quantities AS int[])) AS w(id, quantity)
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
        SELECT id FROM buyer WHERE (SELECT count(*) FROM taken) = :line_count
        RETURNING id, user_id, created_at
    ), lines AS (
        INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents)
        SELECT o.id, t.id, t.quantity, t.price_cents FROM new_order o CROSS JOIN taken t
    )
    SELECT o.id, o.user_id, o.created_at, t.id AS product_id, t.quantity,
           t.price_cents AS unit_price_cents
    FROM new_order o CROSS JOIN taken t ORDER BY t.id
    """
)


class OrderRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def place(self, user_id: int, quantities: dict[int, int]) -> list[Row[Any]]:
        """Take stock and write the order in one round trip; [] if it was refused."""
        ids = sorted(quantities)
        params = {"user_id": user_id, "ids": ids, "quantities": [quantities[i] for i in ids],
                  "line_count": len(ids)}  # fmt: skip
        return list(await self.session.execute(_PLACE, params))

    async def get(self, order_id: int) -> Order | None:
        query = select(Order).where(Order.id == order_id).options(selectinload(Order.items))
        found: Order | None = await self.session.scalar(query)
        return found

    async def page_for_user(self, user_id: int, after_id: int, limit: int) -> list[Order]:
        """Orders with their items in two queries, whatever the number of orders."""
        query = (
            select(Order)
            .where(Order.user_id == user_id, Order.id > after_id)
            .order_by(Order.id)
            .limit(limit)
            .options(selectinload(Order.items))
        )
        return list(await self.session.scalars(query))
