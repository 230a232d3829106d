from functools import partial
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from tenantsvc.api_docs import CREATED, TENANT_PROBLEMS, problems
from tenantsvc.deps import ReadUow, Uow, WriteConn
from tenantsvc.idempotency import store as idempotency
from tenantsvc.orders.repository import OrderState, StockFull
from tenantsvc.orders.schemas import OrderIn, OrderOut, order_page
from tenantsvc.orders.service import place_order
from tenantsvc.pagination import AfterId, IdPath, Limit, NewestFirst, Page
from tenantsvc.plain_routes import body_model, served_by, write_connection
from tenantsvc.problems import Problem
from tenantsvc.products.schemas import MAX_STOCK
from tenantsvc.schemas import created, json_response
from tenantsvc.tenant_routes import TenantRoute
from tenantsvc.wording import plural

router = APIRouter(
    prefix="/orders", tags=["orders"], responses=TENANT_PROBLEMS, route_class=TenantRoute
)


async def create_order(body: OrderIn, conn: WriteConn) -> Response:
    placed = await place_order(conn, body)
    return created(placed, "/orders", placed.id)


async def _serve_create_order(request: Request) -> Response:
    body = await body_model(OrderIn, request)
    key = idempotency.key_of(request)
    async with write_connection(request, request.state.tenant) as conn:
        place = partial(create_order, body, conn)
        return await idempotency.remembered(conn, key, "POST /orders", body, place)


# The hot write, on a plain route (see plain_routes.py).
router.add_api_route(
    "", create_order, methods=["POST"], status_code=status.HTTP_201_CREATED,
    response_model=OrderOut, responses={**CREATED, **problems(409, 413)},
    openapi_extra=idempotency.DOCUMENTED,
    route_class_override=served_by(_serve_create_order),
)  # fmt: skip


@router.get("", response_model=Page[OrderOut])
async def list_orders(
    uow: ReadUow,
    after_id: AfterId = 0,
    limit: Limit = 20,
    status: Annotated[OrderState | None, Query(description="Only these orders.")] = None,
    newest_first: NewestFirst = False,
) -> Page[OrderOut]:
    """The tenant's orders, oldest first unless ``newest_first`` (keyset: pass
    ``next_after_id`` as ``after_id``)."""
    found = await uow.orders.page(after_id, limit + 1, status, newest_first)
    return order_page(found, limit)


@router.get("/{order_id}", response_model=OrderOut)
async def get_order(order_id: IdPath, uow: ReadUow) -> OrderOut:
    order = await uow.orders.get(order_id)
    if order is None:
        raise Problem(404, "Not found", f"no order {order_id}")
    return OrderOut.from_order(order)


@router.post(
    "/{order_id}/cancel", response_model=OrderOut, responses=problems(409),
    openapi_extra=idempotency.DOCUMENTED,
)  # fmt: skip
async def cancel_order(order_id: IdPath, key: idempotency.RequestKey, uow: Uow) -> Response:
    """Cancel a placed order: its stock goes back, in the same transaction, and the order
    stays with its lines and ``cancelled_at``. A second cancel is a 409."""

    async def cancel() -> Response:
        try:
            cancelled = await uow.orders.cancel(order_id)
        except StockFull as full:
            raise _stock_full(order_id, full.product_ids) from None
        order = await uow.orders.get(order_id)
        if order is None:
            raise Problem(404, "Not found", f"no order {order_id}")
        if not cancelled:
            raise Problem(409, "Already cancelled", f"order {order_id} was cancelled before")
        return json_response(OrderOut.from_order(order))

    operation = f"POST /orders/{order_id}/cancel"
    return await idempotency.remembered_in(uow.session, key, operation, None, cancel)


def _stock_full(order_id: int, product_ids: list[int]) -> Problem:
    named = ", ".join(map(str, product_ids))
    detail = (
        f"cancelling order {order_id} would lift the stock of "
        f"{plural(len(product_ids), 'product')} {named} above {MAX_STOCK}: lower it, then"
        " cancel again; nothing changed"
    )
    return Problem(409, "Stock full", detail, extra={"product_ids": product_ids})
