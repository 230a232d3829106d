"""Placing an order: stock and order rows change in one unit of work, or not at all."""

from collections import Counter

from tenantsvc.orders.models import Order
from tenantsvc.orders.schemas import OrderIn
from tenantsvc.problems import Problem
from tenantsvc.uow import UnitOfWork


async def place_order(uow: UnitOfWork, order_in: OrderIn) -> Order:
    if not await uow.users.exists(order_in.user_id):
        raise Problem(404, "Not found", f"no user {order_in.user_id}")
    quantities: Counter[int] = Counter()
    for item in order_in.items:
        quantities[item.product_id] += item.quantity
    prices = await uow.orders.take_stock(dict(quantities))
    if len(prices) < len(quantities):
        await _explain_shortfall(uow, [p for p in sorted(quantities) if p not in prices])
    lines = [(p, quantities[p], prices[p]) for p in sorted(quantities)]
    return await uow.orders.add(user_id=order_in.user_id, lines=lines)


async def _explain_shortfall(uow: UnitOfWork, product_ids: list[int]) -> None:
    """Raise the right problem; the request's rollback undoes any stock already taken."""
    for product_id in product_ids:
        if await uow.products.get(product_id) is None:
            raise Problem(404, "Not found", f"no product {product_id}")
    raise Problem(409, "Insufficient stock", f"not enough stock for product {product_ids[0]}")
