from fastapi import APIRouter, Response, status

from tenantsvc import preconditions
from tenantsvc.api_docs import TENANT_PROBLEMS, problems
from tenantsvc.deps import ReadUow, Uow
from tenantsvc.idempotency import store as idempotency
from tenantsvc.orders.schemas import OrderOut, order_page
from tenantsvc.pagination import AfterId, IdPath, Limit, NewestFirst, Page, page_of
from tenantsvc.preconditions import Conditions, IfNoneMatch, WriteConditions
from tenantsvc.problems import Problem
from tenantsvc.tenant_routes import TenantRoute
from tenantsvc.uow import UnitOfWork
from tenantsvc.users.models import User
from tenantsvc.users.schemas import UserIn, UserOut, UserPatch

router = APIRouter(
    prefix="/users", tags=["users"], responses=TENANT_PROBLEMS, route_class=TenantRoute
)


async def _user_or_404(uow: UnitOfWork, user_id: int, *, for_update: bool = False) -> User:
    user = await uow.users.get(user_id, for_update=for_update)
    if user is None:
        raise Problem(404, "Not found", f"no user {user_id}")
    return user


async def _locked(uow: UnitOfWork, user_id: int, conditions: WriteConditions) -> User:
    """The user, locked until the commit, and as the client's preconditions ask."""
    user = await _user_or_404(uow, user_id, for_update=True)
    conditions.check(user.xmin)
    return user


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=UserOut,
    responses={**preconditions.CREATED_TAGGED, **problems(409, 413)},
    openapi_extra=idempotency.DOCUMENTED,
)  # fmt: skip
async def create_user(body: UserIn, key: idempotency.RequestKey, uow: Uow) -> Response:
    async def create() -> Response:
        # Checked first so the common conflict is a clear 409; the unique index still decides
        # races, surfacing as the generic 409 conflict.
        if await uow.users.get_by_email(body.email) is not None:
            raise Problem(409, "Conflict", "a user with this email exists")
        user = await uow.users.add(email=body.email, name=body.name)
        return preconditions.created_tagged(UserOut.model_validate(user), "/users", user)

    return await idempotency.remembered_in(uow.session, key, "POST /users", body, create)


@router.get("/{user_id}", response_model=UserOut, responses=preconditions.READ)
async def get_user(
    user_id: IdPath, uow: ReadUow, response: Response, if_none_match: IfNoneMatch = None
) -> User | Response:
    user = await _user_or_404(uow, user_id)
    preconditions.tagged(response, user.xmin)
    return preconditions.unchanged(if_none_match, user.xmin) or user


@router.get("", response_model=Page[UserOut])
async def list_users(uow: ReadUow, after_id: AfterId = 0, limit: Limit = 20) -> Page[UserOut]:
    users = await uow.users.page(after_id, limit + 1)
    items = [UserOut.model_validate(u) for u in users]
    return page_of(items, [u.id for u in users], limit)


@router.get("/{user_id}/orders", response_model=Page[OrderOut])
async def list_user_orders(
    user_id: IdPath,
    uow: ReadUow,
    after_id: AfterId = 0,
    limit: Limit = 20,
    newest_first: NewestFirst = False,
) -> Page[OrderOut]:
    if not await uow.users.exists(user_id):
        raise Problem(404, "Not found", f"no user {user_id}")
    found = await uow.orders.page_for_user(user_id, after_id, limit + 1, newest_first)
    return order_page(found, limit)


@router.patch(
    "/{user_id}", response_model=UserOut, responses={**preconditions.WRITE, **problems(409, 413)}
)
async def patch_user(
    user_id: IdPath, body: UserPatch, uow: Uow, response: Response, conditions: Conditions
) -> User:
    user = await _locked(uow, user_id, conditions)
    if body.email is not None:
        holder = await uow.users.get_by_email(body.email)
        if holder is not None and holder.id != user_id:  # races: the unique index, a 409 too
            raise Problem(409, "Conflict", "a user with this email exists")
    user = await uow.users.update(user, body.changes())
    preconditions.tagged(response, user.xmin)
    return user


@router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(412))
async def erase_user(user_id: IdPath, uow: Uow, conditions: Conditions) -> None:
    """Erase the user: its email and name are gone for good (with the answer kept for a
    retried creation), its id and orders stay for the books, and it can no longer order. A
    second erasure is a 404."""
    await uow.users.erase(await _locked(uow, user_id, conditions))
