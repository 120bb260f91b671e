"""Operations: probes, request ids, security headers, the offline docs, the last-resort 500."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2
import pytest
from fastapi import FastAPI

from tests.conftest import make_settings
from tests.support.api import assert_problem, sign_up
from tests.support.databases import SqliteTemplates
from tidings.app import create_app

MINTED_ID = re.compile(r"^[0-9a-f]{32}$")
API_CSP = "default-src 'none'; frame-ancestors 'none'"
ASSET_URL = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)


@pytest.fixture
def make_app(tmp_path: Path, sqlite_templates: SqliteTemplates) -> Callable[..., FastAPI]:
    """Build an app of its own (on a fresh copy of the migrated SQLite template)."""

    def build(**overrides: object) -> FastAPI:
        settings = make_settings(tmp_path / "data", sqlite_templates.clone(), **overrides)
        return create_app(settings)

    return build


@asynccontextmanager
async def _serve(
    app: FastAPI, base_url: str = "http://testserver"
) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx2.AsyncClient(transport=transport, base_url=base_url) as http,
    ):
        yield http


# --- probes ------------------------------------------------------------------------------------


async def test_livez(client: httpx2.AsyncClient) -> None:
    response = await client.get("/livez")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_with_a_reachable_database(client: httpx2.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert all(value == "ok" for value in body.values()), body  # every dependency checked is up


async def test_readyz_is_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, "postgresql+asyncpg://postgres@127.0.0.1:1/nope"))
    async with _serve(app) as http:
        live = await http.get("/livez")
        assert live.status_code == 200  # liveness does not depend on the database
        response = await http.get("/readyz")
    body = assert_problem(response, 503)
    assert body["type"] == "https://tidings.dev/problems/not-ready"
    assert body["detail"] == "The database is unreachable."
    assert body["instance"] == "/readyz"
    assert body["request_id"] == response.headers["x-request-id"]
    assert "127.0.0.1" not in response.text  # the connection error stays in the logs


async def test_readyz_says_degraded_while_the_broker_has_not_started(
    make_app: Callable[..., FastAPI],
) -> None:
    """An API process relaying to a broker that does not answer stays ready (its writes wait
    in the outbox) but says so, and keeps trying in the background."""
    app = make_app(broker="redis", broker_url="redis://127.0.0.1:1/0", relay_in_api=True)
    async with _serve(app) as http:
        response = await http.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "degraded",
        "database": "ok",
        "rate_limit_store": "ok",
        "broker": "starting",
    }


# --- request ids -------------------------------------------------------------------------------


async def test_request_id_is_minted(client: httpx2.AsyncClient) -> None:
    first = (await client.get("/livez")).headers["x-request-id"]
    second = (await client.get("/livez")).headers["x-request-id"]
    assert MINTED_ID.match(first)
    assert MINTED_ID.match(second)
    assert first != second


@pytest.mark.parametrize("incoming", ["abc-123", "req_1.2:3", "A" * 64, "0"])
async def test_sane_request_id_is_echoed(client: httpx2.AsyncClient, incoming: str) -> None:
    response = await client.get("/livez", headers={"X-Request-ID": incoming})
    assert response.headers["x-request-id"] == incoming


@pytest.mark.parametrize(
    "incoming",
    ["has spaces", "x" * 200, "A" * 65, "semi;colon", "<script>", "new\tline", "ünï"],
)
async def test_unsafe_request_id_is_replaced(client: httpx2.AsyncClient, incoming: str) -> None:
    response = await client.get("/livez", headers=[(b"X-Request-ID", incoming.encode("utf-8"))])
    returned = response.headers["x-request-id"]
    assert returned != incoming
    assert MINTED_ID.match(returned)


async def test_problem_bodies_carry_the_request_id(client: httpx2.AsyncClient) -> None:
    response = await client.get("/api/v1/nothing-here", headers={"X-Request-ID": "trace-42"})
    body = assert_problem(response, 404)
    assert body["request_id"] == "trace-42"
    assert response.headers["x-request-id"] == "trace-42"


# --- headers -----------------------------------------------------------------------------------


async def test_security_headers_on_api_responses(client: httpx2.AsyncClient) -> None:
    for response in (await client.get("/livez"), await client.get("/api/v1/nothing-here")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["content-security-policy"] == API_CSP
        assert "strict-transport-security" not in response.headers  # plain http
        assert "cache-control" not in response.headers  # anonymous


async def test_authenticated_responses_are_not_stored(client: httpx2.AsyncClient) -> None:
    user = await sign_up(client, "ops_olive")
    me = await client.get("/api/v1/me", headers=user.headers)
    assert me.status_code == 200
    assert me.headers["cache-control"] == "no-store"
    anonymous = await client.get("/api/v1/users/ops_olive")
    assert anonymous.status_code == 200
    assert "cache-control" not in anonymous.headers
    jwks = await client.get("/.well-known/jwks.json", headers=user.headers)
    assert jwks.headers["cache-control"] == "public, max-age=300"  # a route's own choice wins


async def test_hsts_over_https(make_app: Callable[..., FastAPI]) -> None:
    async with _serve(make_app(), base_url="https://testserver") as http:
        response = await http.get("/livez")
    assert response.status_code == 200
    assert response.headers["strict-transport-security"] == "max-age=63072000"


# --- OpenAPI and the offline docs --------------------------------------------------------------


async def test_openapi_document(client: httpx2.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.1.")
    assert schema["info"]["title"] == "Tidings"
    paths = schema["paths"]
    for path in ("/api/v1/auth/token", "/api/v1/accounts", "/api/v1/me"):
        assert path in paths, sorted(paths)
    assert "post" in paths["/api/v1/auth/token"]
    assert "TokenRequestBody" in schema["components"]["schemas"]


async def _assert_offline_page(http: httpx2.AsyncClient, page: str, bundle: str) -> None:
    response = await http.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "http://" not in html
    assert "https://" not in html
    assets = ASSET_URL.findall(html)
    assert assets, html
    for url in assets:
        assert url.startswith("/static-offline-docs/"), url
    assert f"/static-offline-docs/{bundle}" in assets
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    for url in assets:
        asset = await http.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 0, url
    script = await http.get(f"/static-offline-docs/{bundle}")
    assert "javascript" in script.headers["content-type"]
    assert len(script.content) > 100_000  # the real bundle, not a stub


async def test_swagger_ui_is_served_offline(client: httpx2.AsyncClient) -> None:
    await _assert_offline_page(client, "/docs", "swagger-ui-bundle.js")


async def test_redoc_is_served_offline(client: httpx2.AsyncClient) -> None:
    await _assert_offline_page(client, "/redoc", "redoc.standalone.js")


async def test_docs_can_be_disabled(make_app: Callable[..., FastAPI]) -> None:
    async with _serve(make_app(docs_enabled=False)) as http:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert_problem(await http.get(path), 404)
        assert (await http.get("/livez")).status_code == 200


# --- the last line of defence ------------------------------------------------------------------


async def test_unhandled_exception_is_a_generic_500(make_app: Callable[..., FastAPI]) -> None:
    app = make_app(log_format="json")  # production logging: a plain traceback in the log

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    async with _serve(app) as http:
        response = await http.get("/boom", headers={"X-Request-ID": "boom-1"})
        after = await http.get("/livez")
    body = assert_problem(response, 500)
    assert body["type"] == "https://tidings.dev/problems/internal"
    assert body["title"] == "Internal server error"
    assert "request id" in body["detail"]
    assert body["request_id"] == "boom-1"
    assert response.headers["x-request-id"] == "boom-1"
    assert body["instance"] == "/boom"
    for leaked in ("RuntimeError", "hunter2", "secret internals", "Traceback", 'File "'):
        assert leaked not in response.text
    assert set(body) == {"type", "title", "status", "detail", "instance", "request_id"}
    assert after.status_code == 200  # the app keeps serving
