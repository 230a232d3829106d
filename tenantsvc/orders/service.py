"""Placing an order: stock and order rows change in one transaction, or not at all."""

from collections import Counter
from typing import Any

from tenantsvc.orders import queries
from tenantsvc.orders.schemas import OrderIn, OrderItemOut, OrderOut
from tenantsvc.problems import Problem
from tenantsvc.products.queries import live_product_exists
from tenantsvc.wording import plural


async def place_order(conn: Any, order_in: OrderIn) -> OrderOut:
    quantities: Counter[int] = Counter()
    for item in order_in.items:
        quantities[item.product_id] += item.quantity
    rows = await queries.place(conn, order_in.user_id, dict(quantities))
    if not rows:
        await _explain_refusal(conn, order_in.user_id, dict(quantities))
    items = [
        OrderItemOut.model_construct(
            product_id=r["product_id"], quantity=r["quantity"],
            unit_price_cents=r["unit_price_cents"],
        )
        for r in rows
    ]  # fmt: skip
    first = rows[0]
    return OrderOut.model_construct(
        id=first["id"], user_id=first["user_id"], created_at=first["created_at"], items=items,
        total_cents=sum(i.quantity * i.unit_price_cents for i in items), cancelled_at=None,
    )  # fmt: skip


async def _explain_refusal(conn: Any, user_id: int, quantities: dict[int, int]) -> None:
    """Raise the right problem; the request's rollback undoes any stock already taken. A 409
    names each line short of stock and what its product has (``short``), so a client can
    lower the quantity or drop the line without reading every product again."""
    if not await queries.user_exists(conn, user_id):
        raise Problem(404, "Not found", f"no user {user_id}")
    for product_id in sorted(quantities):
        if not await live_product_exists(conn, product_id):
            raise Problem(404, "Not found", f"no product {product_id}")
    short = [dict(line) for line in await queries.short_lines(conn, quantities)]
    raise Problem(409, "Insufficient stock", _short_of(short), extra={"short": short})


def _short_of(short: list[dict[str, int]]) -> str:
    if not short:  # a product came back between PLACE and now (restored): nothing to name
        return "not enough stock for this order"
    named = ", ".join(str(line["product_id"]) for line in short)
    return f"not enough stock for {plural(len(short), 'product')} {named}"
