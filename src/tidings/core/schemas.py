"""Shared pydantic building blocks for the API."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    HttpUrl,
    PlainSerializer,
    StringConstraints,
    TypeAdapter,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic.fields import FieldInfo

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
def format_timestamp(value: datetime) -> str:
    """A stored (UTC) time as the API writes it: ``2026-11-30T04:05:06.789Z``."""
    return value.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


Timestamp = Annotated[
    datetime,
    PlainSerializer(format_timestamp, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


MAX_URL = 2048
_HTTP_URL: TypeAdapter[HttpUrl] = TypeAdapter(HttpUrl)


def _http_url(value: str) -> str:
    _HTTP_URL.validate_python(value)
    return value


_LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST = rf"(?:{_LABEL}\.)*[A-Za-z](?:[A-Za-z0-9-]*[A-Za-z0-9])?"  # the last label not a number
_PORT = "(?:[0-9]{0,4}|[0-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_PCT = "%[0-9A-Fa-f]{2}"
_PCHAR = rf"(?:[A-Za-z0-9._~!$&'()*+,;=:@-]|{_PCT})"  # RFC 3986 §3.3
# An http(s) URL in RFC 3986 characters that the URL parser takes: `format: uri` alone would
# let through URLs without a host, ports past 65535, hosts whose last label is a number.
WEB_URL_PATTERN = (
    rf"^[Hh][Tt][Tt][Pp][Ss]?://(?:(?:[A-Za-z0-9._~!$&'()*+,;=:-]|{_PCT})*@)?{_HOST}"
    rf"(?::{_PORT})?(?:/{_PCHAR}*)*(?:\?(?:{_PCHAR}|[/?])*)?(?:#(?:{_PCHAR}|[/?])*)?$"
)

# An absolute http(s) URL of at most 2048 characters, kept as sent: the limit applies to what the
# client sent, not to a normalised form that may be longer (a trailing "/", escapes).
WebUrl = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_URL, pattern=WEB_URL_PATTERN),
    AfterValidator(_http_url),
    WithJsonSchema(
        {
            "type": "string",
            "format": "uri",
            "pattern": WEB_URL_PATTERN,
            "minLength": 1,
            "maxLength": MAX_URL,
        }
    ),
]


def reject_nul(value: object) -> object:
    """NUL cannot be stored in PostgreSQL text and has no business in user input."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


WHITESPACE = (
    r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"  # str.strip()
)
NO_NUL = r"^[^\x00]*$"
# Once stripped, not empty: a character `str.strip()` keeps (and, as everywhere, no NUL).
NOT_BLANK = rf"^[^\x00]*[^\x00{WHITESPACE}][^\x00]*$"


def describe_strings(*, stripped: bool) -> Callable[[dict[str, Any]], None]:
    """``json_schema_extra`` for request bodies: say in the JSON schema what the validators
    enforce on every string field: no NUL (:func:`reject_nul`) and, where strings are stripped
    before their length is checked, that ``minLength: 1`` means a non-whitespace character."""

    def extra(schema: dict[str, Any]) -> None:
        for prop in schema.get("properties", {}).values():
            for branch in (prop, *prop.get("anyOf", [])):
                for item in (branch, branch.get("items") or {}):
                    if item.get("type") != "string" or {"pattern", "enum", "const"} & item.keys():
                        continue
                    blank_too = stripped and item.get("minLength") == 1
                    item["pattern"] = NOT_BLANK if blank_too else NO_NUL

    return extra


def _min_length(field: FieldInfo) -> int:
    """The ``min_length`` a string field declares (also inside ``X | None``), else 0."""
    metadata = list(field.metadata)
    for arg in get_args(field.annotation):
        metadata.extend(getattr(arg, "__metadata__", ()))
    lengths = [getattr(item, "min_length", None) for item in metadata]
    return max((n for n in lengths if isinstance(n, int)), default=0)


class RequestModel(BaseModel):
    """Request bodies: unknown fields are an error, NUL is refused, strings are stripped.

    Lengths and patterns apply to the string as sent (what the JSON schema describes), and the
    stripped value is what is kept; a required text that is only whitespace is refused."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=describe_strings(stripped=True))

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: object, info: ValidationInfo) -> object:
        value = reject_nul(value)
        if type(value) is not str:  # an enum member (a str subclass) stays itself
            return value
        stripped = value.strip()
        field = cls.model_fields.get(info.field_name or "")
        if not stripped and value and field is not None and _min_length(field) >= 1:
            raise ValueError("must not be blank")
        return stripped


class ResponseModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)
