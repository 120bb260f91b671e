"""The garbage collector and the request path: feed pages leave no rows for the cyclic
collector (cached rows and the rows a unit of work kept die by reference counting), and a
server process tunes the collector at startup (tidings.core.collector)."""

from __future__ import annotations

import gc
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from sqlalchemy.orm.state import InstanceState

from tests.conftest import make_settings
from tests.support.api import sign_up
from tidings.accounts.models import User
from tidings.app import create_app
from tidings.core.collector import YOUNG_THRESHOLD
from tidings.core.container import Container
from tidings.posts.cache import CachedPost, CachedProfile
from tidings.posts.models import Post
from tidings.settings import Settings


@pytest.fixture
def settings(tmp_path: Path, database_url: str, backend: str) -> Settings:
    """Rows come from a row cache on both backends: in memory on SQLite (the default there),
    in Redis on PostgreSQL (keys under a prefix of their own, gone with their TTL)."""
    if backend == "sqlite":
        return make_settings(tmp_path / "data", database_url)
    prefix = f"test:collector:{secrets.token_hex(6)}:"
    return make_settings(
        tmp_path / "data", database_url, row_cache="redis", cache_key_prefix=prefix
    )


async def test_feed_pages_leave_no_rows_to_the_cyclic_collector(
    client: httpx2.AsyncClient, container: Container
) -> None:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    assert (await client.put("/api/v1/users/bob/follow", headers=alice.headers)).is_success
    for n in range(5):
        response = await client.post(
            "/api/v1/posts", json={"text": f"post {n} #tag"}, headers=bob.headers
        )
        assert response.status_code == 201, response.text
    first = await client.get("/api/v1/feed", headers=alice.headers)  # fills the row cache
    assert len(first.json()["data"]) == 5
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what a collection finds stays in gc.garbage to be seen
    try:
        for _ in range(3):
            response = await client.get("/api/v1/feed", headers=alice.headers)
            assert len(response.json()["data"]) == 5
        gc.collect()
        kinds = Post | User | InstanceState | CachedPost | CachedProfile
        rows = [o for o in gc.garbage if isinstance(o, kinds)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert rows == []


@pytest.fixture
def restore_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restore_collector")
async def test_a_server_process_freezes_its_startup_heap(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path / "data", database_url, gc_tuning=True)
    app = create_app(settings)
    assert gc.get_freeze_count() == 0
    async with app.router.lifespan_context(app):
        assert gc.get_freeze_count() > 10_000  # modules, mappers, models, routes
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD
