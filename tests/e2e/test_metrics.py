"""Prometheus metrics: `GET /metrics` counts requests by route template, token answers by
outcome, rate-limit refusals and consumer runs, and reads the outbox and dead letters from the
database; it is guarded by `TIDINGS_METRICS_TOKEN`; `tidings serve --workers 2` adds up both
processes in every scrape; `tidings worker` serves its own on `TIDINGS_WORKER_METRICS_PORT`.
In process on SQLite and PostgreSQL, and as real server processes on the embedded default."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2
import pytest
from joserfc.jwk import KeySet
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import make_settings
from tests.e2e.test_rate_limits import limited_client
from tests.support.api import DEFAULT_PASSWORD, assert_problem, sign_up
from tidings.app import create_app
from tidings.core.container import Container
from tidings.core.keys import new_signing_key
from tidings.settings import Settings

Sample = tuple[str, frozenset[tuple[str, str]]]


def _samples(text: str) -> dict[Sample, float]:
    found: dict[Sample, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def _value(samples: dict[Sample, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def _scrape(client: httpx2.AsyncClient, **headers: str) -> dict[Sample, float]:
    scraped = await client.get("/metrics", headers=headers)
    assert scraped.status_code == 200, scraped.text
    assert scraped.headers["content-type"].startswith("text/plain"), scraped.headers
    return _samples(scraped.text)


async def test_requests_are_counted_by_route_template(client: httpx2.AsyncClient) -> None:
    before = await _scrape(client)
    for _ in range(3):  # bounded
        assert (await client.get("/livez")).status_code == 200
    assert_problem(await client.get("/api/v1/posts/123456"), 404)
    assert_problem(await client.get("/no/such/route"), 404)
    after = await _scrape(client)

    def delta(route: str, status: str) -> float:
        labels = {"method": "GET", "route": route, "status": status}
        name = "tidings_http_requests_total"
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert delta("/livez", "200") == 3
    assert delta("/api/v1/posts/{post_id}", "404") == 1  # the template, never the raw path
    assert delta("unmatched", "404") == 1
    timed = "tidings_http_request_duration_seconds_count"
    assert _value(after, timed, method="GET", route="/livez") >= 3
    # read from the database at scrape time
    for gauge in (
        "tidings_outbox_pending",
        "tidings_outbox_oldest_pending_seconds",
        "tidings_dead_letters_pending",
    ):
        assert (gauge, frozenset()) in after, gauge
        assert after[(gauge, frozenset())] >= 0


async def test_token_answers_and_consumer_runs_are_counted(client: httpx2.AsyncClient) -> None:
    await sign_up(client, "mia")
    before = await _scrape(client)
    grant = {"grant_type": "password", "username": "mia", "password": "not-her-password"}
    assert_problem(await client.post("/api/v1/auth/token", data=grant), 400)
    grant["password"] = DEFAULT_PASSWORD
    assert (await client.post("/api/v1/auth/token", data=grant)).status_code == 200
    after = await _scrape(client)
    name = "tidings_token_requests_total"
    for outcome in ("invalid_grant", "issued"):
        labels = {"grant_type": "password", "outcome": outcome}
        assert _value(after, name, **labels) - _value(before, name, **labels) == 1, outcome

    # the embedded default applies its events in this process: the post's are applied
    mia = await sign_up(client, "mia_two")
    posted = await client.post("/api/v1/posts", json={"text": "hi"}, headers=mia.headers)
    assert posted.status_code == 201, posted.text
    applied = "tidings_event_deliveries_total"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # bounded: the in-process relay polls every 0.5 s
        runs = await _scrape(client)
        done = sum(
            value
            for (sample, labels), value in runs.items()
            if sample == applied and ("outcome", "applied") in labels
        )
        if done > 0:
            break
        await asyncio.sleep(0.2)
    else:
        pytest.fail("no consumer run was counted within 10 s")


async def test_rate_limit_refusals_are_counted(tmp_path: Path, database_url: str) -> None:
    limits = {"register": "1/hour"}
    async with limited_client(tmp_path, database_url, rate_limits=limits) as client:
        before = await _scrape(client)
        await sign_up(client, "ned")
        body = {"username": "ola", "email": "ola@example.com", "password": DEFAULT_PASSWORD}
        assert_problem(await client.post("/api/v1/accounts", json=body), 429)
        after = await _scrape(client)
    name = "tidings_rate_limited_total"
    assert _value(after, name, policy="register") - _value(before, name, policy="register") == 1


@asynccontextmanager
async def _app_client(settings: Settings) -> AsyncIterator[httpx2.AsyncClient]:
    container = Container.build(settings)
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


async def test_a_token_guards_the_scrape(tmp_path: Path, database_url: str) -> None:
    token = "scrape-" + "x" * 40
    settings = make_settings(tmp_path / "data", database_url, metrics_token=token)
    async with _app_client(settings) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
            refused = await client.get("/metrics", headers=headers)
            assert assert_problem(refused, 401)["detail"].startswith("Send 'Authorization")
            assert "tidings_" not in refused.text
        await _scrape(client, Authorization=f"Bearer {token}")


async def test_production_serves_no_metrics_without_a_token(
    tmp_path: Path, database_url: str
) -> None:
    keys = json.dumps(KeySet([new_signing_key()]).as_dict(private=True))
    settings = make_settings(
        tmp_path / "data",
        database_url,
        env="production",
        secret_key="q" * 8 + "7Hk2-vX9_pLm3Nz4Rt6Wy8Bc0Df5Gh1J",
        signing_keys=keys,
    )
    async with _app_client(settings) as client:
        hidden = await client.get("/metrics")
        assert_problem(hidden, 404)
        assert "tidings_" not in hidden.text


async def test_metrics_can_be_turned_off(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path / "data", database_url, metrics_enabled=False)
    async with _app_client(settings) as client:
        assert_problem(await client.get("/metrics"), 404)


# --- real processes ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def embedded_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(
        TIDINGS_DATA_DIR=str(tmp_path / "data"),
        TIDINGS_LOG_LEVEL="WARNING",
        TIDINGS_GC_TUNING="false",
    )
    env.pop("CI", None)
    return env


def _wait_for(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # bounded
        assert proc.poll() is None, f"{what} exited"
        try:
            if httpx2.get(url, timeout=1).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{what} did not come up in 60 s")


@pytest.fixture
def two_workers(embedded_env: dict[str, str]) -> Iterator[int]:
    port = _free_port()
    proc = subprocess.Popen(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "tidings", "serve", "--port", str(port), "--workers", "2"],
        env=embedded_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}/livez", proc, "the server")
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_every_scrape_adds_up_every_worker_process(two_workers: int) -> None:
    base = f"http://127.0.0.1:{two_workers}"
    with httpx2.Client(base_url=base, timeout=10) as first:
        for _ in range(20):  # bounded; one keep-alive connection lands on one process
            assert first.get("/livez").status_code == 200
    with httpx2.Client(base_url=base, timeout=10) as second:
        for _ in range(20):
            assert second.get("/livez").status_code == 200
    seen = set()
    for _ in range(6):  # new connections, spread over both processes by the kernel
        with httpx2.Client(base_url=base, timeout=10) as scraper:
            samples = _samples(scraper.get("/metrics").text)
        key = (
            "tidings_http_requests_total",
            frozenset({"method": "GET", "route": "/livez", "status": "200"}.items()),
        )
        seen.add(samples.get(key, 0.0))
    # every scrape, whichever process answered, counts all 40 (plus the startup probe's)
    assert min(seen) >= 40, seen


def test_the_worker_serves_its_own_metrics(embedded_env: dict[str, str]) -> None:
    port = _free_port()
    env = {
        **embedded_env,
        "TIDINGS_BROKER": "redis",
        "TIDINGS_BROKER_URL": "redis://127.0.0.1:6379/13",
        "TIDINGS_ROW_CACHE": "none",
        "TIDINGS_WORKER_METRICS_PORT": str(port),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "tidings", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}/metrics", proc, "the worker's metrics")
        text = httpx2.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        names = {family.name for family in text_string_to_metric_families(text)}
        assert {"tidings_event_deliveries", "tidings_events_published"} <= names, names
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
