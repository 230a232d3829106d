from datetime import datetime

from pydantic import Field

from tenantsvc.schemas import Input, Name, Output, Patch

MAX_PRICE_CENTS = 10**12
MAX_STOCK = 2**31 - 1
MAX_BULK = 10_000


class ProductIn(Input):
    name: Name
    price_cents: int = Field(ge=0, le=MAX_PRICE_CENTS)
    stock: int = Field(ge=0, le=MAX_STOCK)


class ProductPatch(Patch):
    name: Name | None = None
    price_cents: int | None = Field(default=None, ge=0, le=MAX_PRICE_CENTS)
    stock: int | None = Field(default=None, ge=0, le=MAX_STOCK)


class ProductBulkIn(Input):
    items: list[ProductIn] = Field(min_length=1, max_length=MAX_BULK)


class ProductBulkOut(Output):
    count: int
    ids: list[int]


class ProductOut(Output):
    id: int
    name: str
    price_cents: int
    stock: int
    created_at: datetime
    deleted_at: datetime | None = None
