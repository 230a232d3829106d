from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from tenantsvc.orders.models import Order, OrderItem

# One statement takes stock for every line of an order. The rows are locked in id order first,
# so two orders touching the same products queue instead of deadlocking; the conditional
# UPDATE means stock can never go below zero, however many requests race.
_TAKE_STOCK = text(
    """
    WITH wanted AS (
        SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:quantities AS int[])) AS w(id, quantity)
    ), locked AS (
        SELECT p.id FROM products p JOIN wanted w ON w.id = p.id
        WHERE p.deleted_at IS NULL ORDER BY p.id FOR UPDATE OF p
    )
    UPDATE products p SET stock = p.stock - w.quantity
    FROM wanted w JOIN locked l ON l.id = w.id
    WHERE p.id = w.id AND p.stock >= w.quantity
    RETURNING p.id, p.price_cents
    """
)


class OrderRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def take_stock(self, quantities: dict[int, int]) -> dict[int, int]:
        """Decrement stock for each product id; returns the unit price of each product whose
        stock was taken. Products missing from the answer were unknown, deleted or short."""
        ids = sorted(quantities)
        params = {"ids": ids, "quantities": [quantities[i] for i in ids]}
        rows = await self.session.execute(_TAKE_STOCK, params)
        return {row.id: row.price_cents for row in rows}

    async def add(self, *, user_id: int, lines: list[tuple[int, int, int]]) -> Order:
        """``lines`` are (product_id, quantity, unit_price_cents)."""
        order = Order(user_id=user_id)
        order.items = [
            OrderItem(product_id=p, quantity=q, unit_price_cents=price) for p, q, price in lines
        ]
        self.session.add(order)
        await self.session.flush()
        return order

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
