"""Base models for request bodies: strict types, unknown fields refused."""

from pydantic import BaseModel, ConfigDict


class Input(BaseModel):
    # strict: "5" is not a quantity; extra="forbid": a misspelt field is an error, not ignored.
    model_config = ConfigDict(strict=True, extra="forbid")


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)
