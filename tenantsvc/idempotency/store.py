"""``Idempotency-Key``: a client that retries a write (a timeout, a dropped connection) gets the
first attempt's answer instead of a second order.

The key is claimed in the request's own transaction, before the write, and the answer is
stored beside it: the key, the write and its answer commit together or not at all. So only a
write that succeeded is remembered; a refused one (a 409 for stock, a 404) rolled back and left
nothing, and its retry is tried again. A retry that arrives while the first attempt is still in
flight waits on the key's row (its primary key) and, once that attempt commits, gets its
answer; if it rolled back instead, the retry does the write itself.

Keys are the tenant's own (the table lives in its schema) and are kept for a day (``KEEP``), as most
payment APIs do; after that the same key starts afresh. Requests that claim a key delete up to
a hundred expired ones as they go, so no sweeper has to visit every schema.
"""

import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from tenantsvc.observability.metrics import IDEMPOTENCY
from tenantsvc.problems import Problem
from tenantsvc.schemas import location

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
KEEP = timedelta(hours=24)
KEPT = f"{KEEP // timedelta(hours=1)} hours"  # as the docs and problems say it
MAX_LENGTH = 255
Write = Callable[[], Awaitable[Response]]
_KEY = re.compile(rf"[!-~]{{1,{MAX_LENGTH}}}")  # visible ASCII, as a header value can carry

# The header as the OpenAPI document shows it, for a route's ``openapi_extra``. Routes read it
# themselves (``key_of``, ``RequestKey``), so that a bad key is the same 400 on every route.
DOCUMENTED = {"parameters": [{
    "name": HEADER, "in": "header", "required": False,
    "description": f"Send the same key again to get the first answer, not a second write "
    f"(kept {KEPT}; only successful writes are kept). Reusing it for another request is a 422.",
    "schema": {"type": "string", "pattern": f"^{_KEY.pattern}$", "maxLength": MAX_LENGTH},
}]}  # fmt: skip

# Claims the key, or finds it taken. DO NOTHING takes no row lock, so a replay writes nothing
# and its commit waits for no WAL flush; it still waits for an attempt in flight with the key.
_CLAIM = """
WITH pruned AS (
    DELETE FROM idempotency_keys WHERE key IN (
        SELECT key FROM idempotency_keys
        WHERE created_at < now() - $3::interval AND key <> $1
        ORDER BY created_at LIMIT 100 FOR UPDATE SKIP LOCKED
    )
), claimed AS (
    INSERT INTO idempotency_keys (key, request_hash) VALUES ($1, $2)
    ON CONFLICT (key) DO NOTHING
    RETURNING true
)
SELECT (SELECT true FROM claimed) AS claimed, k.request_hash, k.status, k.response,
       k.created_at < now() - $3::interval AS expired
FROM (SELECT) AS one LEFT JOIN idempotency_keys k ON k.key = $1
"""
_RECLAIM = """
UPDATE idempotency_keys
SET request_hash = $2, status = NULL, response = NULL, created_at = now()
WHERE key = $1 AND created_at < now() - $3::interval
RETURNING true
"""
_REMEMBER = "UPDATE idempotency_keys SET status = $2, response = $3 WHERE key = $1"
# Only JSON objects are parsed (CASE: in that order), so a body that is not one, such as an
# empty one, is passed over rather than failing the erasure that asked.
_FORGET = text("""
DELETE FROM idempotency_keys
WHERE CASE WHEN substring(response FOR 1) = convert_to('{', 'UTF8')
           THEN convert_from(response, 'UTF8')::jsonb @> CAST(:fields AS jsonb) END
""")


def key_of(request: Request) -> str | None:
    """The request's key, None without one; a malformed or repeated header is a 400."""
    values = [v.strip(" \t") for v in request.headers.getlist(HEADER)]  # RFC 9110: no OWS
    if not values:
        return None
    if len(values) > 1 or not _KEY.fullmatch(values[0]):
        detail = f"{HEADER} must be one header of 1 to {MAX_LENGTH} visible ASCII characters"
        raise Problem(400, f"Bad {HEADER}", detail)
    return values[0]


async def _request_key(request: Request) -> str | None:
    return key_of(request)  # async: FastAPI runs a plain def dependency in a worker thread


# Declared before the unit of work, so a bad key is refused before a connection is taken.
RequestKey = Annotated[str | None, Depends(_request_key)]


def fingerprint(operation: str, body: BaseModel | None) -> bytes:
    """What the key must keep meaning: the operation and the validated body (so a retry
    that only reorders keys or spacing of its JSON is the same request)."""
    sent = "" if body is None else body.model_dump_json()
    return hashlib.sha256(f"{operation}\n{sent}".encode()).digest()


async def remembered(
    conn: Any, key: str | None, operation: str, body: BaseModel | None, write: Write
) -> Response:
    """``write()``'s response; with a key, at most once (``once``)."""
    if key is None:
        return await write()
    return await once(conn, key, fingerprint(operation, body), write, _path(operation))


async def remembered_in(
    session: AsyncSession, key: str | None, operation: str, body: BaseModel | None, write: Write
) -> Response:
    """``remembered`` for a unit of work's session: the key's statements go through the
    asyncpg connection under it, in its transaction."""
    if key is None:
        return await write()
    raw = await (await session.connection()).get_raw_connection()
    return await once(raw.driver_connection, key, fingerprint(operation, body), write,
                      _path(operation))  # fmt: skip


def _path(operation: str) -> str:
    """``POST /orders`` -> ``/orders``: where a resource it created lives, under its id."""
    return operation.partition(" ")[2]


async def once(
    conn: Any, key: str, request_hash: bytes, write: Write, collection: str | None = None
) -> Response:
    """``write()``'s response, or the one stored under ``key`` by an earlier success. ``conn``
    is in the request's transaction (``deps.WriteConn``)."""
    stored = await _claim(conn, key, request_hash)
    if stored is None:
        response = await write()
        await conn.fetchval(_REMEMBER, key, response.status_code, bytes(response.body))
        IDEMPOTENCY.labels("stored").inc()  # counted before the commit: a failed one too
        return response
    if stored["request_hash"] != request_hash:
        IDEMPOTENCY.labels("reused").inc()
        detail = f"this {HEADER} was used for a different request in the last {KEPT}"
        raise Problem(422, f"{HEADER} reused", detail)
    IDEMPOTENCY.labels("replayed").inc()
    headers = {REPLAYED: "true", **_created_at(stored, collection)}
    return Response(stored["response"], stored["status"], headers=headers,
                    media_type="application/json")  # fmt: skip


def _created_at(stored: Any, collection: str | None) -> dict[str, str]:
    """The replayed 201's ``Location``, as the first answer had it: read from the stored
    body's ``id`` (the key keeps the body and status only; a replay is the rare path)."""
    if stored["status"] != 201 or collection is None:
        return {}
    sent = json.loads(stored["response"])
    return location(collection, sent["id"]) if isinstance(sent, dict) and "id" in sent else {}


async def _claim(conn: Any, key: str, request_hash: bytes) -> Any:
    """None once this transaction holds ``key``, else the answer stored under it. An expired
    key is taken over. Each new try sees what committed since the last: a key whose first
    attempt was in flight, one taken over by another request, one pruned meanwhile."""
    for _ in range(4):
        row = (await conn.fetch(_CLAIM, key, request_hash, KEEP))[0]
        if row["claimed"]:
            return None
        if row["request_hash"] is None:  # committed after this statement's snapshot was taken
            continue
        if not row["expired"]:
            return row
        if await conn.fetchval(_RECLAIM, key, request_hash, KEEP):
            return None
    raise Problem(409, f"{HEADER} in use", "another request is taking this key over; retry")


async def forget(session: AsyncSession, fields: dict[str, Any]) -> None:
    """Delete the answers kept for retries that hold ``fields`` (an erased user's email):
    erasure reaches those copies too. Reads every answer kept, a day's worth."""
    await session.execute(_FORGET, {"fields": json.dumps(fields)})
