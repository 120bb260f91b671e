"""Prometheus metrics: `GET /metrics` counts requests by route template, token answers by
outcome, rate-limit refusals and consumer runs, and reads the outbox and dead letters from the
database; it is guarded by `TIDINGS_METRICS_TOKEN`; `tidings serve --workers 2` adds up both
processes in every scrape; `tidings worker` serves its own on `TIDINGS_WORKER_METRICS_PORT`.
In process on SQLite and PostgreSQL, and as real server processes on the embedded default."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from joserfc.jwk import KeySet
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from tests.conftest import make_settings
from tests.e2e.test_rate_limits import limited_client
from tests.support.api import DEFAULT_PASSWORD, assert_problem, sign_up
from tests.support.processes import app_client, clean_env, free_port, wait_until_up
from tidings.app import create_app
from tidings.core.container import Container
from tidings.core.keys import new_signing_key
from tidings.core.metrics import MetricsMiddleware

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
    odd = await client.request("PROPFIND", "/livez")
    assert odd.status_code == 405
    after = await _scrape(client)

    def delta(route: str, status: str) -> float:
        labels = {"method": "GET", "route": route, "status": status}
        name = "tidings_http_requests_total"
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert delta("/livez", "200") == 3
    assert delta("/api/v1/posts/{post_id}", "404") == 1  # the template, never the raw path
    assert delta("unmatched", "404") == 1
    assert delta("/metrics", "200") == 1  # routes outside FastAPI's are found by matching
    other = {"method": "other", "route": "/livez", "status": "405"}  # no label per method
    name = "tidings_http_requests_total"
    assert _value(after, name, **other) - _value(before, name, **other) == 1
    assert not [key for key in after if ("method", "PROPFIND") in key[1]]
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
    odd = await client.post("/api/v1/auth/token", data={"grant_type": "magic"})
    assert_problem(odd, 400)
    after = await _scrape(client)
    name = "tidings_token_requests_total"
    for kind, outcome in (
        ("password", "invalid_grant"),
        ("password", "issued"),
        ("other", "unsupported_grant_type"),
    ):
        labels = {"grant_type": kind, "outcome": outcome}
        assert _value(after, name, **labels) - _value(before, name, **labels) == 1, outcome

    # the embedded default applies its events in this process: the post's are applied
    mia = await sign_up(client, "mia_two")
    after = await _scrape(client)
    posted = await client.post("/api/v1/posts", json={"text": "hi"}, headers=mia.headers)
    assert posted.status_code == 201, posted.text

    def applied(samples: dict[Sample, float]) -> float:
        return sum(
            value
            for (sample, labels), value in samples.items()
            if sample == "tidings_event_deliveries_total" and ("outcome", "applied") in labels
        )

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # bounded: the in-process relay polls every 0.5 s
        if applied(await _scrape(client)) > applied(after):
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


async def test_a_token_guards_the_scrape(tmp_path: Path, database_url: str) -> None:
    token = "scrape-" + "x" * 40
    settings = make_settings(tmp_path / "data", database_url, metrics_token=token)
    async with app_client(settings) as client:
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
    async with app_client(settings) as client:
        hidden = await client.get("/metrics")
        assert_problem(hidden, 404)
        assert "tidings_" not in hidden.text


async def test_metrics_can_be_turned_off(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path / "data", database_url, metrics_enabled=False)
    async with app_client(settings) as client:
        assert_problem(await client.get("/metrics"), 404)
    app = create_app(settings, Container.build(settings))
    assert MetricsMiddleware not in [m.cls for m in app.user_middleware]  # nothing counted
    await app.state.container.close()


def test_an_empty_token_is_no_token_and_production_wants_a_long_one(tmp_path: Path) -> None:
    assert make_settings(tmp_path, "sqlite://", metrics_token="  ").metrics_token is None
    keys = json.dumps(KeySet([new_signing_key()]).as_dict(private=True))
    with pytest.raises(ValidationError, match="at least 32 characters"):
        make_settings(
            tmp_path,
            "sqlite://",
            env="production",
            secret_key="q" * 8 + "7Hk2-vX9_pLm3Nz4Rt6Wy8Bc0Df5Gh1J",
            signing_keys=keys,
            metrics_token="short",
        )


# --- real processes ------------------------------------------------------------------------


@pytest.fixture
def embedded_env(tmp_path: Path) -> dict[str, str]:
    return clean_env(tmp_path / "data")


@pytest.fixture
def shared_dir(tmp_path: Path) -> Path:
    path = tmp_path / "prometheus"
    path.mkdir()
    (path / "counter_999999.db").write_bytes(b"stale")  # an earlier run's: emptied at start
    return path


@pytest.fixture
def two_workers(embedded_env: dict[str, str], shared_dir: Path) -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "tidings", "serve", "--port", str(port), "--workers", "2"],
        env={**embedded_env, "PROMETHEUS_MULTIPROC_DIR": str(shared_dir)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/livez", proc, "the server")
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def _livez_count(path: Path) -> float:
    """How many ``GET /livez`` one process's counter file holds."""
    total = 0.0
    for entry in MmapedDict.read_all_values_from_file(str(path)):
        key, value = entry[0], entry[1]
        if '"/livez"' in key and "tidings_http_requests_total" in key:
            total += value
    return total


def test_every_scrape_adds_up_every_worker_process(two_workers: int, shared_dir: Path) -> None:
    base = f"http://127.0.0.1:{two_workers}"
    livez = (
        "tidings_http_requests_total",
        frozenset({"method": "GET", "route": "/livez", "status": "200"}.items()),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # bounded: until both processes have answered some
        with httpx2.Client(base_url=base, timeout=10) as client:  # a new connection each
            for _ in range(5):
                assert client.get("/livez").status_code == 200
        if len([f for f in shared_dir.glob("counter_*.db") if _livez_count(f) > 0]) >= 2:
            break
    else:
        pytest.fail("one process answered every connection for 30 s")
    assert not (shared_dir / "counter_999999.db").exists()
    totals, texts = set(), []
    for _ in range(6):  # bounded; new connections, which either process may take
        with httpx2.Client(base_url=base, timeout=10) as scraper:
            text = scraper.get("/metrics").text
        texts.append(text)
        totals.add(_samples(text).get(livez, 0.0))
    assert len(totals) == 1, totals  # every scrape, from either process, the same sum
    per_process = [_livez_count(f) for f in shared_dir.glob("counter_*.db")]
    assert totals.pop() == sum(per_process), per_process
    for text in texts:  # the database's gauges once each, never kept per process
        assert text.count("# TYPE tidings_outbox_pending gauge") == 1, text
        assert "pid=" not in text


def test_the_worker_refuses_the_servers_shared_directory(
    embedded_env: dict[str, str], tmp_path: Path
) -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "tidings", "worker"],
        env={**embedded_env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2, refused.stderr
    assert "PROMETHEUS_MULTIPROC_DIR is for" in " ".join(refused.stderr.split())


def test_the_worker_serves_its_own_metrics(embedded_env: dict[str, str]) -> None:
    port = free_port()
    env = {
        **embedded_env,
        "TIDINGS_BROKER": "redis",
        "TIDINGS_BROKER_URL": "redis://127.0.0.1:6379/13",
        "TIDINGS_ROW_CACHE": "none",
        "TIDINGS_WORKER_METRICS_PORT": str(port),
    }
    # a worker refuses an unmigrated database (it leases its node id there)
    migrated = subprocess.run(
        [sys.executable, "-m", "tidings", "migrate"], env=env, capture_output=True, timeout=120
    )
    assert migrated.returncode == 0, migrated.stderr.decode(errors="replace")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tidings", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/metrics", proc, "the worker's metrics")
        text = httpx2.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        names = {family.name for family in text_string_to_metric_families(text)}
        assert {"tidings_event_deliveries", "tidings_events_published"} <= names, names
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
