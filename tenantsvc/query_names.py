"""Query parameters a route does not take are refused, as unknown body fields are.

Ignoring them is what frameworks do by default, and it turns a client's typo into a wrong
answer that looks right: ``GET /orders?after=42`` (for ``after_id``) serves the first page
again, and a client paging with it loops on that page for ever; ``?satus=placed`` lists
cancelled orders too. A 422 that names the parameter and the ones the route takes is found at
the first call instead.
"""

from collections.abc import Awaitable, Callable

from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

Handler = Callable[[Request], Awaitable[Response]]


def only_known(route: APIRoute, handler: Handler) -> Handler:
    """``handler``, refusing a request whose query names a parameter ``route`` does not
    declare (its own or its dependencies'). A request without a query pays one dict lookup."""
    known = frozenset(_names(route.dependant))
    message = "Unknown query parameter: this path takes " + (
        ", ".join(sorted(known)) or "no query parameters"
    )

    async def checked(request: Request) -> Response:
        if request.scope["query_string"]:
            unknown = request.query_params.keys() - known
            if unknown:
                raise RequestValidationError(
                    [{"loc": ("query", name), "type": "extra_forbidden",
                      "msg": message} for name in sorted(unknown)]
                )  # fmt: skip
        return await handler(request)

    return checked


def _names(dependant: Dependant) -> set[str]:
    names = set()
    for param in dependant.query_params:
        model = param.field_info.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):  # a query model's fields
            names |= {field.alias or name for name, field in model.model_fields.items()}
        else:
            names.add(param.alias)
    for sub in dependant.dependencies:
        names |= _names(sub)
    return names
