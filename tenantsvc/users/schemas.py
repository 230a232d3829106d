from datetime import datetime
from typing import Annotated

from pydantic import Field

from tenantsvc.schemas import Input, Name, Output, Patch, Trimmed

Email = Annotated[
    str, Trimmed, Field(max_length=320, pattern=r"^[^@\s\x00]+@[^@\s\x00]+\.[^@\s\x00]+$")
]


class UserIn(Input):
    email: Email
    name: Name


class UserPatch(Patch):
    email: Email | None = None
    name: Name | None = None


class UserOut(Output):
    id: int
    email: str
    name: str
    created_at: datetime
