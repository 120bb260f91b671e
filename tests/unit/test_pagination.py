"""Keyset pagination helpers: cursors, trimming, and the Link header."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from starlette.requests import Request
from starlette.responses import Response

from tidings.core.errors import BadRequest
from tidings.core.pagination import (
    CURSOR_VERSION,
    PageParams,
    decode_cursor,
    encode_cursor,
    paginate,
    set_next_link,
)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _request(path: str = "/api/v1/admin/users", query: bytes = b"") -> Request:
    return Request(
        {
            "type": "http",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query,
            "headers": [(b"host", b"testserver")],
            "server": ("testserver", 80),
        }
    )


@pytest.mark.parametrize(
    "key",
    [
        {"id": 1},
        {"id": 2**63 - 1},
        {"id": 7, "created_ms": 1_767_225_600_123},
        {"id": 0, "name": "ünïcode/+="},
    ],
)
def test_round_trip(key: dict[str, Any]) -> None:
    cursor = encode_cursor(key)
    assert "=" not in cursor  # unpadded
    assert all(c.isalnum() or c in "-_" for c in cursor)  # URL-safe alphabet
    assert decode_cursor(cursor) == {"v": CURSOR_VERSION, **key}


def test_cursor_carries_the_version() -> None:
    raw = base64.urlsafe_b64decode(encode_cursor({"id": 5}) + "==")
    assert orjson.loads(raw)["v"] == CURSOR_VERSION


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "%%%",
        "!!!!",
        "a",
        "abc",
        "é",
        "\x00\x01",
        _b64(b"not json"),
        _b64(b"\xff\xfe\xfd"),
        _b64(b"[1, 2]"),
        _b64(b'"a string"'),
        _b64(b"42"),
        _b64(b"null"),
        _b64(b"{}"),
        _b64(b'{"v": 2, "id": 1}'),
        _b64(b'{"v": "1", "id": 1}'),
        _b64(b'{"v": null, "id": 1}'),
        _b64(b'{"id": 1}'),
    ],
)
def test_garbage_cursors_are_bad_request(cursor: str) -> None:
    with pytest.raises(BadRequest) as caught:
        decode_cursor(cursor)
    assert caught.value.status == 400
    assert "cursor" in caught.value.detail


@pytest.mark.parametrize(
    "key",
    [
        {},
        {"id": "5"},
        {"id": 5.0},
        {"id": 1.5},
        {"id": None},
        {"id": [5]},
        {"id": {"n": 5}},
        {"id": True},
        {"id": False},
        {"other": 5},
    ],
)
def test_key_requires_integer_fields(key: dict[str, Any]) -> None:
    params = PageParams(limit=10, cursor=encode_cursor(key))
    with pytest.raises(BadRequest):
        params.key("id")


def test_key_checks_every_field() -> None:
    params = PageParams(limit=10, cursor=encode_cursor({"id": 5, "at": True}))
    assert params.key("id") == {"v": CURSOR_VERSION, "id": 5, "at": True}
    with pytest.raises(BadRequest):
        params.key("id", "at")


def test_key_of_first_page_and_valid_cursor() -> None:
    assert PageParams(limit=10, cursor=None).key("id") is None
    params = PageParams(limit=10, cursor=encode_cursor({"id": 99, "ms": 3}))
    assert params.key("id", "ms") == {"v": CURSOR_VERSION, "id": 99, "ms": 3}


def test_key_rejects_garbage_cursor() -> None:
    with pytest.raises(BadRequest):
        PageParams(limit=10, cursor="%%%").key("id")


def test_paginate_last_page_has_no_cursor() -> None:
    rows = [{"id": 5}, {"id": 4}, {"id": 3}]
    assert paginate(rows, 3, lambda r: {"id": r["id"]}) == (rows, None)
    assert paginate(rows, 10, lambda r: {"id": r["id"]}) == (rows, None)
    assert paginate([], 10, lambda r: {"id": r["id"]}) == ([], None)


def test_paginate_trims_and_points_at_last_row_served() -> None:
    rows = [{"id": 9}, {"id": 8}, {"id": 7}, {"id": 6}]  # fetched with limit + 1
    page, cursor = paginate(rows, 3, lambda r: {"id": r["id"]})
    assert page == rows[:3]
    assert cursor is not None
    assert decode_cursor(cursor) == {"v": CURSOR_VERSION, "id": 7}
    assert PageParams(limit=3, cursor=cursor).key("id") == {"v": CURSOR_VERSION, "id": 7}


def test_paginate_with_limit_one() -> None:
    page, cursor = paginate([10, 9], 1, lambda r: {"id": r})
    assert page == [10]
    assert cursor is not None
    assert decode_cursor(cursor)["id"] == 10


def test_set_next_link_adds_rfc8288_header() -> None:
    response = Response()
    cursor = encode_cursor({"id": 42})
    set_next_link(_request(query=b"limit=2&role=user"), response, cursor)
    assert response.headers["link"] == (
        f'<http://testserver/api/v1/admin/users?limit=2&role=user&cursor={cursor}>; rel="next"'
    )


def test_set_next_link_replaces_the_previous_cursor() -> None:
    response = Response()
    old, new = encode_cursor({"id": 50}), encode_cursor({"id": 40})
    set_next_link(_request(query=f"cursor={old}&limit=5".encode()), response, new)
    link = response.headers["link"]
    assert link.startswith("<http://testserver/api/v1/admin/users?")
    assert link.endswith('>; rel="next"')
    assert f"cursor={new}" in link
    assert old not in link
    assert "limit=5" in link
    assert link.count("cursor=") == 1


def test_set_next_link_without_next_page_adds_nothing() -> None:
    response = Response()
    set_next_link(_request(query=b"limit=2"), response, None)
    assert "link" not in response.headers
