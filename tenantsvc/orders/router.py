from fastapi import APIRouter, Response, status

from tenantsvc.deps import ReadUow, WriteConn
from tenantsvc.orders.schemas import OrderIn, OrderOut
from tenantsvc.orders.service import place_order
from tenantsvc.pagination import IdPath
from tenantsvc.problems import Problem
from tenantsvc.schemas import json_response

router = APIRouter(prefix="/orders", tags=["orders"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=OrderOut)
async def create_order(body: OrderIn, conn: WriteConn) -> Response:
    placed = await place_order(conn, body)
    return json_response(placed, status.HTTP_201_CREATED)


@router.get("/{order_id}", response_model=OrderOut)
async def get_order(order_id: IdPath, uow: ReadUow) -> OrderOut:
    order = await uow.orders.get(order_id)
    if order is None:
        raise Problem(404, "Not found", f"no order {order_id}")
    return OrderOut.from_order(order)
