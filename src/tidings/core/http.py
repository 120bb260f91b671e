"""Small HTTP helpers shared by feature routers: ids in paths, ETags and preconditions."""

from __future__ import annotations

import hashlib
from typing import Annotated

import orjson
from fastapi import Path, Request

from tidings.core.errors import NotFound, PreconditionFailed
from tidings.core.schemas import MAX_ID

IdPath = Annotated[str, Path(pattern=r"^[0-9]{1,19}$", description="A numeric id string.")]


def parse_id(value: str, what: str = "resource") -> int:
    number = int(value)
    if number > MAX_ID or number < 1:
        raise NotFound(f"No such {what}.")
    return number


def etag_for(version: int, body: bytes) -> str:
    """A strong ETag: the version (what ``If-Match`` compares) and a digest of the body
    (so counts or viewer state changing also changes the tag for ``If-None-Match``)."""
    return f'"{version}-{hashlib.sha256(body).hexdigest()[:16]}"'


def _tags(header: str) -> list[str]:
    return [t.strip() for t in header.split(",") if t.strip()]


def expected_version(request: Request) -> int | None:
    """The version named by ``If-Match`` (None when absent or ``*``); 412 when unparseable."""
    header = request.headers.get("if-match")
    if header is None:
        return None
    tags = _tags(header)
    if "*" in tags:
        return None
    for tag in tags:
        value = tag.removeprefix("W/").strip('"').split("-", 1)[0]
        if value.isascii() and value.isdigit() and len(value) <= 9:
            return int(value)
    raise PreconditionFailed("If-Match does not name a version of this resource.")


def not_modified(request: Request, etag: str) -> bool:
    header = request.headers.get("if-none-match")
    if header is None:
        return False
    tags = _tags(header)
    return "*" in tags or etag in tags or f"W/{etag}" in tags


def resource_headers(body: bytes, collection: str) -> dict[str, str]:
    """``ETag`` and ``Location`` of a created resource, from its serialised body (so a replayed
    idempotent response carries the same headers as the original)."""
    data = orjson.loads(body)
    return {
        "ETag": etag_for(int(data["version"]), body),
        "Location": f"{collection}/{data['id']}",
    }
