"""Resource caps: huge limits, bodies over the cap, giant arrays, deep JSON, common passwords."""

from __future__ import annotations

import time

import httpx2
import pytest

from tests.support.api import DEFAULT_PASSWORD, assert_problem, sign_up
from tidings.core.limits import json_depth


def test_json_depth_scanner() -> None:
    assert json_depth(b'{"a": [1, {"b": "[[[[{{{"}]}') == 3
    assert json_depth(b'"\\"[[["') == 0
    assert json_depth(b"[" * 100 + b"]" * 100) == 100
    assert json_depth(b"") == 0


@pytest.mark.parametrize("depth", [33, 5_000, 200_000])
async def test_deep_json_is_400_quickly(client: httpx2.AsyncClient, depth: int) -> None:
    body = b"[" * depth + b"]" * depth
    started = time.monotonic()
    response = await client.post(
        "/api/v1/accounts", content=body, headers={"content-type": "application/json"}
    )
    if len(body) > 1_048_576:
        assert_problem(response, 413)
    else:
        assert_problem(response, 400)
    assert time.monotonic() - started < 1.0


async def test_body_one_byte_over_the_cap_is_413(client: httpx2.AsyncClient) -> None:
    cap = 1_048_576
    head = b'{"username": "'
    tail = b'"}'
    body = head + b"x" * (cap + 1 - len(head) - len(tail)) + tail
    assert len(body) == cap + 1
    response = await client.post(
        "/api/v1/accounts", content=body, headers={"content-type": "application/json"}
    )
    assert_problem(response, 413)


async def test_ten_thousand_element_arrays_are_refused(client: httpx2.AsyncClient) -> None:
    user = await sign_up(client, "arrays")
    started = time.monotonic()
    media = [{"url": "https://e.example/x.png", "type": "image"}] * 10_000
    response = await client.post(
        "/api/v1/posts", json={"text": "x", "media": media}, headers=user.headers
    )
    assert_problem(response, 422)
    links = ["https://e.example/"] * 10_000
    response = await client.post(
        "/api/v1/posts", json={"text": "x", "links": links}, headers=user.headers
    )
    assert_problem(response, 422)
    assert time.monotonic() - started < 2.0


async def test_huge_page_size_is_422(client: httpx2.AsyncClient) -> None:
    user = await sign_up(client, "pager")
    response = await client.get("/api/v1/users/pager/followers?limit=1000000", headers=user.headers)
    assert_problem(response, 422)


@pytest.mark.parametrize("password", ["password123", "qwertyuiop", "iloveyou1", "Password1"])
async def test_common_passwords_are_refused(client: httpx2.AsyncClient, password: str) -> None:
    response = await client.post(
        "/api/v1/accounts",
        json={"username": "commoner", "email": "c@example.com", "password": password},
    )
    body = assert_problem(response, 422)
    assert any("password" in e["loc"] for e in body["errors"])
    assert (
        await client.post(
            "/api/v1/accounts",
            json={"username": "commoner", "email": "c@example.com", "password": DEFAULT_PASSWORD},
        )
    ).status_code == 201


async def test_trace_and_unknown_methods_are_405_with_allow(client: httpx2.AsyncClient) -> None:
    for method in ("TRACE", "PROPFIND", "PATCH"):
        response = await client.request(method, "/api/v1/accounts")
        assert_problem(response, 405)
        assert response.headers["allow"] == "POST"
