"""Base models for request bodies: strict types, unknown fields refused."""

from typing import Annotated, Any, Self

from fastapi import Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

# PostgreSQL's text cannot hold NUL (U+0000): refused with the other 422s, where the server
# would fail the statement (a 500). A pattern, so the OpenAPI schema says it too.
NO_NUL = r"^[^\x00]*$"
# Without the whitespace around it, which no one means (a name copied with a trailing space),
# and which would make "   " a name.
Trimmed = StringConstraints(strip_whitespace=True)
Name = Annotated[str, Trimmed, Field(min_length=1, max_length=200, pattern=NO_NUL)]


class Input(BaseModel):
    # strict: "5" is not a quantity; extra="forbid": a misspelt field is an error, not ignored.
    model_config = ConfigDict(strict=True, extra="forbid")


class Patch(Input):
    """A PATCH body: every field optional, at least one given; ``changes()`` holds those."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if not self.changes():
            raise ValueError(f"give at least one of {', '.join(type(self).model_fields)}")
        return self

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


def json_response(
    model: BaseModel, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """Serialize once, with pydantic-core, straight to bytes. Handlers on hot paths return
    this instead of a model, which FastAPI would validate against response_model again
    (response_model stays declared for the OpenAPI schema)."""
    return Response(model.model_dump_json(), status_code, headers, media_type="application/json")


def created(model: BaseModel, collection: str, resource_id: int) -> Response:
    """A 201 that says where the new resource is (``Location``, RFC 9110 15.3.2)."""
    return json_response(model, 201, location(collection, resource_id))


def location(collection: str, resource_id: int) -> dict[str, str]:
    return {"Location": f"{collection}/{resource_id}"}
