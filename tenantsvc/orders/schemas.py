from datetime import datetime

from pydantic import Field

from tenantsvc.orders.models import Order
from tenantsvc.pagination import MAX_ID, Page, page_of
from tenantsvc.schemas import Input, Output

MAX_ITEMS = 100
MAX_QUANTITY = 10_000


class OrderItemIn(Input):
    product_id: int = Field(ge=1, le=MAX_ID)
    quantity: int = Field(ge=1, le=MAX_QUANTITY)


class OrderIn(Input):
    user_id: int = Field(ge=1, le=MAX_ID)
    items: list[OrderItemIn] = Field(min_length=1, max_length=MAX_ITEMS)


class OrderItemOut(Output):
    product_id: int
    quantity: int
    unit_price_cents: int


class OrderOut(Output):
    id: int
    user_id: int
    created_at: datetime
    items: list[OrderItemOut]
    total_cents: int
    cancelled_at: datetime | None = None  # its stock went back then

    @classmethod
    def from_order(cls, order: Order) -> "OrderOut":
        items = [OrderItemOut.model_validate(i) for i in order.items]
        total = sum(i.quantity * i.unit_price_cents for i in items)
        return cls(
            id=order.id,
            user_id=order.user_id,
            created_at=order.created_at,
            items=items,
            total_cents=total,
            cancelled_at=order.cancelled_at,
        )


def order_page(orders: list[Order], limit: int) -> Page[OrderOut]:
    """A page of orders fetched with ``limit + 1`` rows (see ``pagination.page_of``)."""
    return page_of([OrderOut.from_order(o) for o in orders], [o.id for o in orders], limit)
