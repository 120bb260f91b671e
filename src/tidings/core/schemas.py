"""Shared pydantic building blocks for the API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
)

# 64-bit ids travel as strings (JavaScript numbers lose precision past 2**53).
Id = Annotated[
    int,
    PlainSerializer(lambda v: str(v), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": "^[0-9]{1,19}$", "examples": ["7396348416"]}),
]

MAX_ID = 2**63 - 1


def _parse_id(value: object) -> object:
    if isinstance(value, str):
        if not value.isdigit() or len(value) > 19:
            raise ValueError("must be a numeric id string")
        number = int(value)
        if number > MAX_ID:
            raise ValueError("id out of range")
        return number
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be a numeric id string")
    if not 0 <= value <= MAX_ID:
        raise ValueError("id out of range")
    return value


# An id sent by a client: a string of digits (a JSON integer is accepted too).
IdIn = Annotated[
    int,
    BeforeValidator(_parse_id),
    WithJsonSchema({"type": "string", "pattern": "^[0-9]{1,19}$"}),
]

# RFC 3339 UTC, always with a "Z".
Timestamp = Annotated[
    datetime,
    PlainSerializer(
        lambda v: v.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z", return_type=str, when_used="json"
    ),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


def reject_nul(value: object) -> object:
    """NUL cannot be stored in PostgreSQL text and has no business in user input."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


class RequestModel(BaseModel):
    """Request bodies: unknown fields are an error, strings are stripped, NUL is refused."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        return reject_nul(value)


class ResponseModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)
