from fastapi import APIRouter, Request, Response, status
from pydantic import TypeAdapter

from tenantsvc import preconditions
from tenantsvc.api_docs import TENANT_PROBLEMS, problems
from tenantsvc.deps import ReadConn, ReadUow, Uow
from tenantsvc.idempotency import store as idempotency
from tenantsvc.pagination import AfterId, IdPath, Limit, Page, PageParams, page_json
from tenantsvc.plain_routes import query_model, read_connection, served_by
from tenantsvc.preconditions import Conditions, IfNoneMatch, WriteConditions
from tenantsvc.problems import Problem
from tenantsvc.products import queries
from tenantsvc.products.models import Product
from tenantsvc.products.schemas import (
    ProductBulkIn,
    ProductBulkOut,
    ProductIn,
    ProductOut,
    ProductPatch,
)
from tenantsvc.schemas import json_response
from tenantsvc.tenant_routes import TenantRoute
from tenantsvc.uow import UnitOfWork

router = APIRouter(
    prefix="/products", tags=["products"], responses=TENANT_PROBLEMS, route_class=TenantRoute
)
_PAGE = TypeAdapter(Page[ProductOut])


def _not_found(product_id: int) -> Problem:
    return Problem(404, "Not found", f"no product {product_id}")


async def _locked(uow: UnitOfWork, product_id: int, conditions: WriteConditions) -> Product:
    """The live product, locked until the commit, and as the client's preconditions ask."""
    product = await uow.products.get(product_id, for_update=True)
    if product is None:
        raise _not_found(product_id)
    conditions.check(product.xmin)
    return product


async def list_products(conn: ReadConn, after_id: AfterId = 0, limit: Limit = 20) -> Response:
    rows = await queries.live_page(conn, after_id, limit + 1)
    return Response(page_json(_PAGE, rows, limit), media_type="application/json")


async def _serve_list_products(request: Request) -> Response:
    params = query_model(PageParams, request)
    async with read_connection(request, request.state.tenant) as conn:
        return await list_products(conn, params.after_id, params.limit)


# The hot read, on a plain route (see plain_routes.py), and first: routes match in order.
router.add_api_route(
    "", list_products, methods=["GET"], response_model=Page[ProductOut],
    route_class_override=served_by(_serve_list_products),
)  # fmt: skip


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=ProductOut,
    responses={**preconditions.CREATED_TAGGED, **problems(413)},
    openapi_extra=idempotency.DOCUMENTED,
)  # fmt: skip
async def create_product(body: ProductIn, key: idempotency.RequestKey, uow: Uow) -> Response:
    async def create() -> Response:
        product = await uow.products.add(**body.model_dump())
        return preconditions.created_tagged(ProductOut.model_validate(product), "/products",
                                            product)  # fmt: skip

    return await idempotency.remembered_in(uow.session, key, "POST /products", body, create)


@router.post(
    "/bulk", status_code=status.HTTP_201_CREATED, response_model=ProductBulkOut,
    responses=problems(413), openapi_extra=idempotency.DOCUMENTED,
)  # fmt: skip
async def bulk_create_products(
    body: ProductBulkIn, key: idempotency.RequestKey, uow: Uow
) -> Response:
    async def create() -> Response:
        ids = await uow.products.add_many([item.model_dump() for item in body.items])
        return json_response(ProductBulkOut(count=len(ids), ids=ids), status.HTTP_201_CREATED)

    return await idempotency.remembered_in(uow.session, key, "POST /products/bulk", body, create)


@router.get("/{product_id}", response_model=ProductOut, responses=preconditions.READ)
async def get_product(
    product_id: IdPath, uow: ReadUow, response: Response, if_none_match: IfNoneMatch = None
) -> Product | Response:
    product = await uow.products.get(product_id)
    if product is None:
        raise _not_found(product_id)
    preconditions.tagged(response, product.xmin)
    return preconditions.unchanged(if_none_match, product.xmin) or product


@router.patch(
    "/{product_id}", response_model=ProductOut, responses={**preconditions.WRITE, **problems(413)}
)
async def patch_product(
    product_id: IdPath, body: ProductPatch, uow: Uow, response: Response, conditions: Conditions
) -> Product:
    product = await uow.products.update(await _locked(uow, product_id, conditions), body.changes())
    preconditions.tagged(response, product.xmin)
    return product


@router.delete("/{product_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(412))
async def delete_product(product_id: IdPath, uow: Uow, conditions: Conditions) -> None:
    await _locked(uow, product_id, conditions)
    await uow.products.set_deleted(product_id, deleted=True)


@router.post("/{product_id}/restore", response_model=ProductOut, responses=preconditions.TAGGED)
async def restore_product(product_id: IdPath, uow: Uow, response: Response) -> Product:
    product = await uow.products.set_deleted(product_id, deleted=False)
    if product is None:
        raise Problem(404, "Not found", f"no deleted product {product_id}")
    preconditions.tagged(response, product.xmin)
    return product
