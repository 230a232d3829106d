"""RFC 9457 problem details: every error this service returns has this one shape."""

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from tenantsvc.db.errors import READ_ONLY_SQL_TRANSACTION, sqlstate
from tenantsvc.db.stale import is_replayable
from tenantsvc.tenancy.errors import first_line

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"


class Problem(Exception):
    """Raised anywhere in request handling; rendered as a problem body with its status."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.headers = headers
        self.extra = extra or {}  # RFC 9457 extension members, beside detail


def problem_response(
    status: int,
    title: str,
    detail: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> Response:
    body = problem_body(status, title, detail, **extra)
    return Response(body, status, headers=headers, media_type=MEDIA_TYPE)


def problem_body(status: int, title: str, detail: str | None = None, **extra: Any) -> str:
    """An RFC 9457 problem as JSON: every error the service writes, the app's and the HTTP
    protocol's (``request_head.py``) alike."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail is not None:
        body["detail"] = detail
    body.update(extra)
    return json.dumps(body)


def _on_problem(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(exc.status, exc.title, exc.detail, exc.headers, **exc.extra)


def _on_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.detail == _UNPARSED and exc.__cause__ is not None:
        return _unparsed(exc.__cause__)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allow(request, headers.get("Allow", ""))
    # The router's own 404 (no route): say which path, a trailing slash being the usual slip.
    detail = f"no such path: {request.url.path}" if exc.status_code == 404 else None
    return problem_response(exc.status_code, str(exc.detail), detail, headers=headers or None)


# FastAPI's words for a body it could not read (fastapi/routing.py); an app's own 400 with a
# cause (``raise HTTPException(400, ...) from exc``) stays the app's.
_UNPARSED = "There was an error parsing the body"


def _unparsed(cause: BaseException) -> Response:
    """FastAPI's one 400 with a cause: a body ``json.loads`` could not read for a reason other
    than a syntax error (nested too deep, not UTF-8), which it answers without saying why. The
    same body is a 422 ``json_invalid`` on the plain routes (pydantic parses those), and so on
    every route, with the reason."""
    reason = "nested too deep" if isinstance(cause, RecursionError) else str(cause)
    return _invalid([{"loc": ["body"], "msg": f"Invalid JSON: {reason}", "type": "json_invalid"}])


def _allow(request: Request, first_route: str) -> str:
    """A 405's Allow lists every method the path takes. Starlette's names those of the first
    route on the path only (GET /products and POST /products are two routes); the API
    description knows them all. Only a 405 pays for this."""
    methods = {m.strip() for m in first_route.split(",") if m.strip()}
    return ", ".join(sorted(methods | allowed_methods(request.app, request.url.path)))


def allowed_methods(app: FastAPI, path: str) -> set[str]:
    """The methods ``path`` takes, HEAD with GET and OPTIONS with any; none where no route
    takes the path."""
    methods: set[str] = set()
    for pattern, documented in _documented_methods(app):
        if pattern.match(path):
            methods |= documented
    if "GET" in methods:
        methods.add("HEAD")
    return methods | {"OPTIONS"} if methods else methods


def _documented_methods(app: FastAPI) -> list[tuple[re.Pattern[str], set[str]]]:
    index: list[tuple[re.Pattern[str], set[str]]] | None = getattr(app.state, "allow_index", None)
    if index is None:
        paths = app.openapi()["paths"]
        index = [(compile_path(path)[0], {m.upper() for m in ops}) for path, ops in paths.items()]
        app.state.allow_index = index
    return index


def sent_as_json(content_type: str | None) -> bool:
    """Whether a body says it is JSON (``application/json``, ``application/*+json``, any
    parameters). One that says nothing is not read as JSON either, as FastAPI's routes read it
    (``strict_content_type``): the plain routes must not accept what the others refuse."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )


def not_json() -> Problem:
    return Problem(415, "Unsupported Media Type", "send the body as application/json")


def _on_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if not sent_as_json(request.headers.get("content-type")) and any(
        e.get("loc", ())[:1] == ("body",) for e in exc.errors()
    ):
        return _on_problem(request, not_json())
    errors = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    return _invalid(errors)


def _invalid(errors: list[dict[str, Any]]) -> Response:
    return problem_response(422, "Invalid request", "the request failed validation", errors=errors)


def _on_integrity(_: Request, exc: Exception) -> Response:
    # Constraint violations the handlers did not foresee: the request conflicts with data.
    return problem_response(409, "Conflict", "the request conflicts with existing data")


READ_ONLY_RETRY = "30"  # seconds: a maintenance window is minutes, not milliseconds
_AWAY_DETAIL = "the database is unavailable, retry shortly"


@dataclass(frozen=True)
class _Outage:
    """What a 503 says of a kind of database failure, to the client and in the log."""

    level: int
    logged: str
    detail: str
    retry_after: str = "1"


# By SQLSTATE, or its class. "The database is unavailable" was said of each of them, of a
# database that was up; and a disk or memory run out, or a database that takes no writes, was
# an "unhandled error" and a 500 that blamed the service. A disk or memory run out, a login
# refused (its role locked, credentials rotated), a database gone: an operator is needed now,
# an ERROR in the log that says which.
_OUTAGES = {
    "57014": _Outage(
        logging.WARNING, "statement cancelled (statement timeout, or an operator)",
        "the database cancelled the request's statement: it ran past the statement timeout (it "
        "may have waited for rows another transaction holds), or an operator cancelled it; "
        "nothing was written, retry shortly",
    ),
    READ_ONLY_SQL_TRANSACTION: _Outage(
        logging.WARNING, "the database takes no writes (read-only)",
        "the database takes no writes at the moment (read-only: maintenance, or a failover); "
        "nothing was written, reads are served: retry later",
        READ_ONLY_RETRY,
    ),
    "53300": _Outage(logging.WARNING, "the database has no connection free",
                     "the database is busy, retry shortly"),
    "28": _Outage(logging.ERROR, "the database refused the service's login", _AWAY_DETAIL),
    "3D000": _Outage(logging.ERROR, "the service's database does not exist", _AWAY_DETAIL),
    "53": _Outage(
        logging.ERROR, "the database is out of a resource",
        "the database ran out of a resource (disk space, memory) and could not take this "
        "request; nothing was written, retry later",
    ),
}  # fmt: skip
_AWAY = _Outage(logging.WARNING, "database unavailable", _AWAY_DETAIL)


# SQLSTATEs that mean "the database is away or busy right now", not "your request is wrong":
# connection exceptions (08), operator intervention such as shutdown or restart (57P0x), and
# each outage above, which no request of a client's can mend and an operator can.
_TRANSIENT_PREFIXES = ("08", "57P0", *_OUTAGES)


# The database could not be reached, or a connection to it was lost: raised by the driver,
# the pool or the socket itself.
DATABASE_AWAY = (
    sa_exc.TimeoutError,
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    ConnectionError,
    OSError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)
DATABASE_ERRORS = (sa_exc.DBAPIError, asyncpg.PostgresError, sa_exc.EmulatedDBAPIException)


def database_unavailable(exc: BaseException) -> bool:
    """Away, busy or restarting: a 503 to retry, not a 500."""
    if isinstance(exc, DATABASE_AWAY):
        return True
    if not isinstance(exc, DATABASE_ERRORS):
        return False
    # asyncpg's InternalClientError: a connection left mid-operation by a lost server; the
    # pool's pre-ping discards it on the next checkout.
    lost_connection = type(getattr(exc, "orig", exc)).__name__ == "InternalClientError"
    # Still refused after every replay (tenant_routes.py): transient too.
    return lost_connection or sqlstate(exc).startswith(_TRANSIENT_PREFIXES) or is_replayable(exc)


def unavailable(exc: BaseException) -> Response:
    """A 503 to retry, that says what happened."""
    state = sqlstate(exc)
    outage = _OUTAGES.get(state) or _OUTAGES.get(state[:2]) or _AWAY
    code = f" (SQLSTATE {state})" if state else ""
    log.log(outage.level, "%s%s: %s", outage.logged, code, first_line(exc))
    return problem_response(503, "Service unavailable", outage.detail,
                            headers={"Retry-After": outage.retry_after})  # fmt: skip


def _on_database_error(request: Request, exc: Exception) -> Response:
    return unavailable(exc) if database_unavailable(exc) else _on_unexpected(request, exc)


def _on_unexpected(_: Request, exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc)
    return problem_response(500, "Internal server error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(Exception, _on_unexpected)
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(sa_exc.IntegrityError, _on_integrity)
    # The driver adapter's own errors are among them, unwrapped: a raw pool checkout
    # (db/session.py) that cannot connect raises these rather than SQLAlchemy's DBAPIError.
    for error in (*DATABASE_AWAY, *DATABASE_ERRORS):
        app.add_exception_handler(error, _on_database_error)
