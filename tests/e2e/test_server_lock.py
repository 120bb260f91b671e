"""One server per embedded database while the in-memory row cache serves it (core.writers).

The in-memory row cache hears only of its own process's writes. A second server on the same
SQLite file would revoke a session (say) behind its back, and the first would go on accepting
it until the cached entry expired. So such a second server is refused at start, before it
writes anything; one-shot commands (create-admin) still work beside a running server.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from fastapi import FastAPI

from tests.conftest import make_settings
from tests.support.databases import SqliteTemplates
from tests.support.processes import clean_env, free_port
from tidings.app import create_app
from tidings.core.errors import ConfigurationError
from tidings.core.writers import LOCK_SUFFIX, ServerLock, lock_path


def test_the_lock_file_sits_next_to_a_sqlite_file_and_nowhere_else(tmp_path: Path) -> None:
    assert lock_path(f"sqlite+aiosqlite:///{tmp_path}/t.db") == tmp_path / f"t.db{LOCK_SUFFIX}"
    assert lock_path("sqlite+aiosqlite://") is None
    assert lock_path("sqlite+aiosqlite:///:memory:") is None
    assert lock_path("sqlite+aiosqlite:///file::memory:?uri=true") is None
    assert lock_path("postgresql+asyncpg://postgres@127.0.0.1/test") is None


def test_shared_holders_coexist_and_an_exclusive_one_excludes_them(tmp_path: Path) -> None:
    path = tmp_path / "db" / f"t.db{LOCK_SUFFIX}"  # its folder is made on demand
    first, second = ServerLock(path, exclusive=False), ServerLock(path, exclusive=False)
    first.acquire()
    second.acquire()
    memory = ServerLock(path, exclusive=True)
    with pytest.raises(ConfigurationError, match="another Tidings process already serves it"):
        memory.acquire()
    assert not memory.held
    first.release()
    second.release()
    memory.acquire()  # the shared holders are gone
    late = ServerLock(path, exclusive=False)
    with pytest.raises(ConfigurationError, match="with the in-memory row cache serves it"):
        late.acquire()
    memory.release()
    late.acquire()
    late.release()


def _app(data_dir: Path, database_url: str, **overrides: object) -> FastAPI:
    return create_app(make_settings(data_dir, database_url, **overrides))


async def test_a_second_app_on_the_same_file_is_refused_while_one_caches_rows_in_memory(
    tmp_path: Path, sqlite_templates: SqliteTemplates
) -> None:
    url = sqlite_templates.clone()
    cached = _app(tmp_path / "a", url)  # the embedded default: row cache `auto` = memory
    assert cached.state.container.settings.effective_row_cache == "memory"
    async with cached.router.lifespan_context(cached):
        transport = httpx2.ASGITransport(app=cached)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as http:
            assert (await http.get("/livez")).status_code == 200
        for overrides in ({}, {"row_cache": "none"}):
            second = _app(tmp_path / "b", url, **overrides)
            with pytest.raises(ConfigurationError, match="in-memory row cache"):
                async with second.router.lifespan_context(second):
                    pytest.fail("a second server started beside the in-memory row cache")
    # stopped: its lock is gone, and servers without the memory cache share the file
    first, second = (_app(tmp_path / d, url, row_cache="none") for d in ("a", "b"))
    async with first.router.lifespan_context(first), second.router.lifespan_context(second):
        refused = _app(tmp_path / "c", url)
        with pytest.raises(ConfigurationError, match="another Tidings process already serves"):
            async with refused.router.lifespan_context(refused):
                pytest.fail("the memory cache started beside other servers")


@pytest.fixture
def embedded_env(tmp_path: Path) -> dict[str, str]:
    return clean_env(tmp_path / "data")  # the embedded default: SQLite in there


def _tidings(*args: str) -> list[str]:
    return [sys.executable, "-m", "tidings", *args]


@pytest.fixture
def running_server(embedded_env: dict[str, str]) -> Iterator[int]:
    """`tidings serve` on the embedded default, in a process of its own."""
    port = free_port()
    proc = subprocess.Popen(  # noqa: S603 - our own CLI
        _tidings("serve", "--port", str(port)),
        env=embedded_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, "the first server exited"
            try:
                if httpx2.get(f"http://127.0.0.1:{port}/livez", timeout=1).status_code == 200:
                    break
            except httpx2.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail("the first server did not come up in 60 s")
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_the_cli_refuses_a_second_server_and_still_creates_an_admin(
    running_server: int, embedded_env: dict[str, str]
) -> None:
    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - our own CLI
            _tidings(*args),
            env={**embedded_env, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    port = str(free_port())
    for env in ({}, {"TIDINGS_ROW_CACHE": "none"}):
        refused = run("serve", "--port", port, **env)
        assert refused.returncode == 2, refused.stderr
        text = " ".join(refused.stderr.split())
        assert "Refusing to start" in text
        assert "Stop the other process, or set TIDINGS_ROW_CACHE=none" in text
        assert "Traceback" not in refused.stderr
    worker = run("worker", TIDINGS_BROKER="redis", TIDINGS_ROW_CACHE="none")
    assert worker.returncode == 2, worker.stderr
    assert "Refusing to start" in worker.stderr

    made = run(
        "users", "create-admin", "--username", "boss", "--email", "b@example.com",
        "--password", "a-long-admin-password",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    token = httpx2.post(
        f"http://127.0.0.1:{running_server}/api/v1/auth/token",
        data={"grant_type": "password", "username": "boss", "password": "a-long-admin-password"},
        timeout=10,
    )
    assert token.status_code == 200, token.text  # the running server sees the new admin
