"""Optimistic concurrency on single rows: an ETag on what a client reads, If-Match on what it
writes (RFC 9110).

A PATCH sets absolute values. A client that read a product's stock, then sets it, overwrites
whatever orders took in between: units sold come back, and are sold again. With the ETag it
read sent as If-Match, that write is a 412 instead, and the client reads again and decides
again. Without If-Match a write is unconditional, as before.

The ETag is the row's version (``db/base.RowVersionMixin``). The row is locked before the
comparison, so nothing can change it between the check and the write.
"""

from typing import Annotated

from fastapi import Header, Response

from tenantsvc.problems import Problem

IfMatch = Annotated[
    str | None,
    Header(description="An ETag from a read of this row (or *): written only if it is current."),
]


def etag(version: int) -> str:
    return f'"{version}"'


def tagged(response: Response, version: int) -> None:
    response.headers["ETag"] = etag(version)


def check(if_match: str | None, version: int) -> None:
    """Nothing without If-Match; else a 412 unless it names the current version, or is ``*``.
    Strong comparison, as RFC 9110 asks for If-Match: a weak tag never matches."""
    if if_match is None:
        return
    tags = {tag.strip() for tag in if_match.split(",")}
    if "*" not in tags and etag(version) not in tags:
        detail = "the row changed since that ETag was read: read it again, then retry"
        raise Problem(412, "Precondition failed", detail, {"ETag": etag(version)})
