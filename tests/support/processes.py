"""Real Tidings processes and in-process apps for the tests: a free loopback port, a clean
environment for `python -m tidings`, waiting for a process to answer, and an app with its own
container behind an ASGI client."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2
import pytest

from tidings.app import create_app
from tidings.core.container import Container
from tidings.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any TIDINGS_*, OTEL_*, CI or multiprocess-metrics
    setting, for the embedded default in ``data_dir``, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIDINGS_", "OTEL_"))}
    for name in ("CI", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(name, None)
    env.update(
        TIDINGS_DATA_DIR=str(data_dir),
        TIDINGS_LOG_LEVEL="WARNING",
        TIDINGS_PASSWORD_HASH_TIME_COST="1",
        TIDINGS_PASSWORD_HASH_MEMORY_KIB="1024",
        TIDINGS_PASSWORD_HASH_PARALLELISM="1",
        TIDINGS_GC_TUNING="false",
    )
    env.update(extra)
    return env


def wait_until_up(url: str, proc: subprocess.Popen[bytes], what: str, seconds: float = 60) -> None:
    """Until ``url`` answers 200 (bounded); fails if ``proc`` exits first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{what} exited"
        try:
            if httpx2.get(url, timeout=1).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{what} did not come up in {seconds:g} s")


@asynccontextmanager
async def app_client(
    settings: Settings, container: Container | None = None
) -> AsyncIterator[httpx2.AsyncClient]:
    """An app on ``settings`` with a container of its own (``container``, or a new one; closed
    after), started, behind an ASGI client."""
    container = container or Container.build(settings)
    app = create_app(settings, container)
    try:
        async with (
            app.router.lifespan_context(app),
            httpx2.AsyncClient(
                transport=httpx2.ASGITransport(app=app), base_url="http://testserver"
            ) as client,
        ):
            yield client
    finally:
        await container.close()
