from typing import Literal

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import selectinload

from tenantsvc.db.repository import Repository
from tenantsvc.orders.models import Order, OrderItem
from tenantsvc.products.models import Product
from tenantsvc.products.schemas import MAX_STOCK

OrderState = Literal["placed", "cancelled"]


class StockFull(Exception):
    """Cancelling would give products back more stock than a product can hold."""

    def __init__(self, product_ids: list[int]) -> None:
        super().__init__(product_ids)
        self.product_ids = product_ids


class OrderRepository(Repository):
    async def get(self, order_id: int) -> Order | None:
        query = select(Order).where(Order.id == order_id).options(selectinload(Order.items))
        found: Order | None = await self.session.scalar(query)
        return found

    async def page_for_user(
        self, user_id: int, after_id: int, limit: int, newest_first: bool = False
    ) -> list[Order]:
        return await self._page(after_id, limit, newest_first, Order.user_id == user_id)

    async def page(
        self, after_id: int, limit: int, state: OrderState | None, newest_first: bool = False
    ) -> list[Order]:
        if state is None:
            return await self._page(after_id, limit, newest_first)
        cancelled = Order.cancelled_at.is_not(None)
        chosen = cancelled if state == "cancelled" else ~cancelled
        return await self._page(after_id, limit, newest_first, chosen)

    async def _page(
        self, after_id: int, limit: int, newest_first: bool, *where: ColumnElement[bool]
    ) -> list[Order]:
        """Orders with their items in two queries, whatever the number of orders. Newest
        first, ``after_id`` is the last order of the page before (0: none), and the page
        holds the orders below it: the same index seek, read backwards."""
        if newest_first:
            keyset = [Order.id < after_id] if after_id else []
            query = select(Order).where(*keyset, *where).order_by(Order.id.desc())
        else:
            query = select(Order).where(Order.id > after_id, *where).order_by(Order.id)
        query = query.limit(limit).options(selectinload(Order.items))
        return list(await self.session.scalars(query))

    async def cancel(self, order_id: int) -> bool:
        """Marks the order cancelled and puts its stock back, in the caller's transaction;
        False if there is no such order still placed. The products are locked in id order,
        as placing an order locks them (``queries.PLACE``), so the two never deadlock."""
        cancelled = await self.session.scalar(
            update(Order)
            .where(Order.id == order_id, Order.cancelled_at.is_(None))
            .values(cancelled_at=func.now())
            .returning(Order.id)
        )
        if cancelled is None:
            return False
        lines = select(OrderItem.product_id).where(OrderItem.order_id == order_id)
        locked = select(Product.id).where(Product.id.in_(lines)).order_by(Product.id)
        await self.session.execute(locked.with_for_update())
        if full := await self._would_overflow(order_id):
            raise StockFull(full)
        await self.session.execute(
            update(Product)
            .where(Product.id == OrderItem.product_id, OrderItem.order_id == order_id)
            .values(stock=Product.stock + OrderItem.quantity)
            .execution_options(synchronize_session=False)
        )
        return True

    async def _would_overflow(self, order_id: int) -> list[int]:
        """Products whose stock the order's units would lift past what the column holds
        (a PATCH may have set it to the top since): named, rather than a 500 from the
        database's integer overflow."""
        over = Product.stock > MAX_STOCK - OrderItem.quantity  # the sum itself would overflow
        query = select(OrderItem.product_id).join(Product, Product.id == OrderItem.product_id)
        query = query.where(OrderItem.order_id == order_id, over).order_by(OrderItem.product_id)
        return list(await self.session.scalars(query))
