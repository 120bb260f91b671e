"""Regression tests for hardening fixes: 500s carry security headers, chunked oversize bodies
are 413, bad key sets are refused cleanly, replayed creates keep their headers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest

from tests.conftest import make_settings
from tests.support.api import assert_problem, sign_up
from tidings.app import create_app
from tidings.auth.deps import public
from tidings.core.container import Container
from tidings.core.errors import ConfigurationError
from tidings.core.keys import load_key_material
from tidings.settings import Settings


async def test_unhandled_500_still_has_security_headers(container: Container) -> None:
    from fastapi import Depends

    app = create_app(container.settings, container)

    @app.get("/_boom", dependencies=[Depends(public)])
    async def boom() -> None:
        raise RuntimeError("kaput")

    transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/_boom")
    assert_problem(response, 500)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "kaput" not in response.text


async def test_chunked_body_over_the_cap_is_413(tmp_path: Path, database_url: str) -> None:
    app = create_app(make_settings(tmp_path, database_url, max_body_bytes=1024))

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"x" * 1000

    transport = httpx2.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx2.AsyncClient(transport=transport, base_url="http://t") as client,
    ):
        response = await client.post(
            "/api/v1/me/password", content=chunks(), headers={"content-type": "text/plain"}
        )
    assert_problem(response, 413)


@pytest.mark.parametrize(
    "keys",
    [
        {"keys": []},
        {"keys": "abc"},
        {"keys": [{"kty": "OKP"}]},
        {"keys": [{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ", "kid": "x"}]},
    ],
)
def test_bad_signing_key_sets_are_configuration_errors(
    tmp_path: Path, keys: dict[str, object]
) -> None:
    settings = Settings(
        env="production", data_dir=tmp_path, secret_key="s" * 48, signing_keys=json.dumps(keys)
    )  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        load_key_material(settings)


async def test_replayed_create_keeps_location_and_etag(client: httpx2.AsyncClient) -> None:
    user = await sign_up(client, "replayer")
    headers = {**user.headers, "Idempotency-Key": "k-1"}
    first = await client.post("/api/v1/posts", json={"text": "once"}, headers=headers)
    again = await client.post("/api/v1/posts", json={"text": "once"}, headers=headers)
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["etag"] == first.headers["etag"]
