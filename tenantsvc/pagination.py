"""Keyset pagination: ``WHERE id > :after_id ORDER BY id LIMIT :limit`` is an index seek at
any depth, where OFFSET would scan and discard every earlier row."""

from typing import Annotated, Generic, TypeVar

from fastapi import Path, Query
from pydantic import BaseModel

MAX_ID = 2**63 - 1  # bigint: larger ids would fail in the driver, not as a clean 404/422

IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
AfterId = Annotated[int, Query(ge=0, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=100)]

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_after_id: int | None


def page_of(items: list[T], ids: list[int], limit: int) -> Page[T]:
    """``items`` were fetched with ``limit + 1`` rows to learn whether another page exists."""
    more = len(items) > limit
    return Page[T](items=items[:limit], next_after_id=ids[limit - 1] if more else None)
