from datetime import datetime

from pydantic import Field

from tenantsvc.schemas import Input, Name, Output


class UserIn(Input):
    email: str = Field(max_length=320, pattern=r"^[^@\s\x00]+@[^@\s\x00]+\.[^@\s\x00]+$")
    name: Name


class UserOut(Output):
    id: int
    email: str
    name: str
    created_at: datetime
