from datetime import datetime

from pydantic import Field

from tenantsvc.schemas import Input, Output


class UserIn(Input):
    email: str = Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    name: str = Field(min_length=1, max_length=200)


class UserOut(Output):
    id: int
    email: str
    name: str
    created_at: datetime
