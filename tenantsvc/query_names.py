"""Query parameters a route does not take are refused, as unknown body fields are; so is one
given twice that the route takes once.

Ignoring them is what frameworks do by default, and it turns a client's typo into a wrong
answer that looks right: ``GET /orders?after=42`` (for ``after_id``) serves the first page
again, and a client paging with it loops on that page for ever; ``?satus=placed`` lists
cancelled orders too. A 422 that names the parameter and the ones the route takes is found at
the first call instead.

A parameter given twice (``?limit=1&limit=100``) was read as its last value: where a proxy or
a gateway checks the first, the two disagree about the request (parameter pollution). Only
parameters declared as lists may repeat.
"""

from collections import Counter
from collections.abc import Awaitable, Callable
from types import UnionType
from typing import Any, Union, get_args, get_origin

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
    names = _names(route.dependant)
    known = frozenset(names)
    repeatable = frozenset(name for name, many in names.items() if many)
    message = "Unknown query parameter: this path takes " + (
        ", ".join(sorted(known)) or "no query parameters"
    )

    async def checked(request: Request) -> Response:
        if request.scope["query_string"]:
            query = request.query_params
            unknown = query.keys() - known
            if unknown:
                raise RequestValidationError(
                    [{"loc": ("query", name), "type": "extra_forbidden",
                      "msg": message} for name in sorted(unknown)]
                )  # fmt: skip
            if len(query.multi_items()) > len(query):
                _refuse_repeats(query.multi_items(), repeatable)
        return await handler(request)

    return checked


def _refuse_repeats(items: list[tuple[str, str]], repeatable: frozenset[str]) -> None:
    counted = Counter(k for k, _ in items)
    repeated = {k for k, n in counted.items() if n > 1 and k not in repeatable}
    if repeated:
        raise RequestValidationError(
            [{"loc": ("query", name), "type": "repeated",
              "msg": "Given more than once: this path takes it once"} for name in sorted(repeated)]
        )  # fmt: skip


def _many(annotation: Any) -> bool:
    """A list, set or tuple (or an optional one): FastAPI collects its repeats."""
    origin = get_origin(annotation)
    if origin in (Union, UnionType):
        return any(_many(arg) for arg in get_args(annotation))
    return (origin or annotation) in (list, set, frozenset, tuple)


def _names(dependant: Dependant) -> dict[str, bool]:
    """Each query parameter's name, and whether it may repeat."""
    names: dict[str, bool] = {}
    for param in dependant.query_params:
        model = param.field_info.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):  # a query model's fields
            names |= {field.alias or name: _many(field.annotation)
                      for name, field in model.model_fields.items()}  # fmt: skip
        else:
            names[param.alias] = _many(model)
    for sub in dependant.dependencies:
        names |= _names(sub)
    return names
