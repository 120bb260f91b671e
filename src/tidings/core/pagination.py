"""Keyset pagination: ``?limit=`` and an opaque ``?cursor=``; lists answer ``{data, next_cursor}``.

A cursor is the sort key of the last row served, base64url-encoded JSON with a version tag.
Cursors are not secret (they hold only ids the client has seen) but they are validated: garbage
is a 400, never a 500.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

import orjson
from fastapi import Query, Request, Response
from pydantic import BaseModel, Field

from tidings.core.errors import BadRequest
from tidings.core.schemas import MAX_ID

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
CURSOR_VERSION = 1

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None = Field(
        default=None, description="Pass as ?cursor= to fetch the next page; null on the last page."
    )


def encode_cursor(key: dict[str, Any]) -> str:
    raw = orjson.dumps({"v": CURSOR_VERSION, **key})
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = orjson.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeEncodeError) as exc:
        raise BadRequest("The cursor is not valid; start again without one.") from exc
    if not isinstance(value, dict) or value.get("v") != CURSOR_VERSION:
        raise BadRequest("The cursor is not valid; start again without one.")
    return value


@dataclass(frozen=True)
class PageParams:
    limit: int
    cursor: str | None

    def key(self, *fields: str) -> dict[str, Any] | None:
        """The decoded cursor, checked to carry integer ``fields``; None on the first page."""
        if self.cursor is None:
            return None
        value = decode_cursor(self.cursor)
        for name in fields:
            item = value.get(name)
            if not isinstance(item, int) or isinstance(item, bool) or not 0 <= item <= MAX_ID:
                raise BadRequest("The cursor is not valid; start again without one.")
        return value


async def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size (max 100).")] = (
        DEFAULT_LIMIT
    ),
    cursor: Annotated[
        str | None, Query(max_length=512, description="Opaque cursor from `next_cursor`.")
    ] = None,
) -> PageParams:
    return PageParams(limit=limit, cursor=cursor)


def set_next_link(request: Request, response: Response, next_cursor: str | None) -> None:
    """Add ``Link: <...>; rel="next"`` (RFC 8288) when there is a next page."""
    if next_cursor is None:
        return
    url = request.url.include_query_params(cursor=next_cursor)
    response.headers["Link"] = f'<{url}>; rel="next"'


def json_page(request: Request, items: list[Any], next_cursor: str | None) -> Response:
    """A page as ``Page[...]`` JSON, written with orjson from items already shaped like it (the
    route's ``response_model`` documents it; FastAPI does not re-serialise a returned
    Response), with its ``Link`` header."""
    body = orjson.dumps({"data": items, "next_cursor": next_cursor})
    response = Response(body, media_type="application/json")
    set_next_link(request, response, next_cursor)
    return response


def paginate(rows: list[T], limit: int, key_of: Any) -> tuple[list[T], str | None]:
    """Rows were fetched with ``limit + 1``: trim and compute the cursor for the next page."""
    if len(rows) <= limit:
        return rows, None
    page = rows[:limit]
    return page, encode_cursor(key_of(page[-1]))
