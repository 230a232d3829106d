from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from tenantsvc.orders.models import Order


class OrderRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

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
