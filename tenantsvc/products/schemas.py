from datetime import datetime

from pydantic import ConfigDict, Field, model_validator

from tenantsvc.schemas import Input, Name, Output

MAX_PRICE_CENTS = 10**12
MAX_STOCK = 2**31 - 1
MAX_BULK = 10_000


class ProductIn(Input):
    name: Name
    price_cents: int = Field(ge=0, le=MAX_PRICE_CENTS)
    stock: int = Field(ge=0, le=MAX_STOCK)


class ProductPatch(Input):
    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    name: Name | None = None
    price_cents: int | None = Field(default=None, ge=0, le=MAX_PRICE_CENTS)
    stock: int | None = Field(default=None, ge=0, le=MAX_STOCK)

    @model_validator(mode="after")
    def _not_empty(self) -> "ProductPatch":
        if not self.changes():
            raise ValueError("give at least one of name, price_cents, stock")
        return self

    def changes(self) -> dict[str, object]:
        return self.model_dump(exclude_none=True)


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
