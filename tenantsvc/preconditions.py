"""Optimistic concurrency on single rows: an ETag on what a client reads, If-Match on what it
writes, If-None-Match on what it reads again, or writes only if it changed (RFC 9110).

A PATCH sets absolute values. A client that read a product's stock, then sets it, overwrites
whatever orders took in between: units sold come back, and are sold again. With the ETag it
read sent as If-Match, that write is a 412 instead, and the client reads again and decides
again. Without If-Match a write is unconditional, as before. A client that holds a copy sends
its ETag as If-None-Match and gets a 304 without a body while the row is unchanged. On a
write, If-None-Match is the converse of If-Match: a 412 when it names the current version (or is
``*``, which any row that exists matches), as RFC 9110 asks; ignored, that write went through.

The ETag is the row's version (``db/base.RowVersionMixin``). The row is locked before the
comparison, so nothing can change it between the check and the write.
"""

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Response, status
from pydantic import BaseModel

from tenantsvc.api_docs import CREATED, problems
from tenantsvc.problems import Problem
from tenantsvc.schemas import created

IfMatch = Annotated[
    str | None,
    Header(description="An ETag from a read of this row (or *): written only if it is current."),
]

IfNoneMatch = Annotated[
    str | None,
    Header(description="ETags of copies the client holds (or *): 304, no body, if one is current."),
]

_IfNoneMatchWrite = Annotated[
    str | None,
    Header(description="ETags (or *): written only if none is current (*: never, the row exists)."),
]

# For the OpenAPI description: the reads and writes of one row, and what they may answer.
_ETAG = {"ETag": {"description": "The row's version: send it as If-Match or If-None-Match",
                  "schema": {"type": "string"}}}  # fmt: skip
TAGGED: dict[int | str, dict[str, Any]] = {200: {"headers": _ETAG}}
READ = {**TAGGED, 304: {"description": "If-None-Match named the current version",
                        "headers": _ETAG}}  # fmt: skip
WRITE = {**TAGGED, **problems(412)}
# A create's 201: where the row lives, and its first version (not on a replayed answer).
CREATED_TAGGED: dict[int | str, dict[str, Any]] = {
    201: {**CREATED[201], "headers": {**CREATED[201]["headers"], **_ETAG}}
}


def etag(version: int) -> str:
    return f'"{version}"'


def tagged(response: Response, version: int) -> None:
    response.headers["ETag"] = etag(version)


def created_tagged(out: BaseModel, collection: str, row: Any) -> Response:
    """A new row's 201: where it lives, and its first version. A retry's replayed answer has
    no ETag (the idempotency key keeps body and status): the row may have moved since."""
    answer = created(out, collection, row.id)
    tagged(answer, row.xmin)
    return answer


@dataclass(frozen=True)
class WriteConditions:
    """A write's If-Match and If-None-Match, checked against the row once it is locked."""

    if_match: str | None = None
    if_none_match: str | None = None

    def check(self, version: int) -> None:
        """RFC 9110's order. If-Match: a 412 unless it names the current version, or is ``*``
        (strong comparison: a weak tag never matches). Then If-None-Match: a 412 if it names
        the current version, or is ``*`` (weak comparison)."""
        if self.if_match is not None:
            tags = _tags(self.if_match)
            if "*" not in tags and etag(version) not in tags:
                detail = "the row changed since that ETag was read: read it again, then retry"
                raise Problem(412, "Precondition failed", detail, {"ETag": etag(version)})
        if self.if_none_match is not None and _names(self.if_none_match, version):
            detail = "If-None-Match names the row's current version (or is *): not written"
            raise Problem(412, "Precondition failed", detail, {"ETag": etag(version)})


async def _write_conditions(
    if_match: IfMatch = None, if_none_match: _IfNoneMatchWrite = None
) -> WriteConditions:
    """A coroutine: FastAPI would run a plain function (or the class itself) in a thread."""
    return WriteConditions(if_match, if_none_match)


Conditions = Annotated[WriteConditions, Depends(_write_conditions)]


def _tags(field: str) -> set[str]:
    return {tag.strip() for tag in field.split(",")}


def unchanged(if_none_match: str | None, version: int) -> Response | None:
    """A 304 (with the ETag, no body) when If-None-Match names the current version or is
    ``*``; None otherwise. Weak comparison, as RFC 9110 asks for If-None-Match."""
    if if_none_match is None or not _names(if_none_match, version):
        return None
    return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag(version)})


def _names(if_none_match: str, version: int) -> bool:
    """Whether If-None-Match matches the row: ``*``, or its version by weak comparison."""
    held = {tag.removeprefix("W/") for tag in _tags(if_none_match)}
    return "*" in held or etag(version) in held
