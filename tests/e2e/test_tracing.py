"""OpenTelemetry traces: `tidings serve` with `TIDINGS_TRACING=true` exports by OTLP/HTTP to
the endpoint of the standard variables — a span per request (not the probes), its SQL
statements as child spans of the same trace — and writes the trace id into its log lines.
A real server process on the embedded default, and a receiver on loopback standing in for an
OpenTelemetry collector."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest
import redis
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.support.processes import clean_env, free_port, wait_until_up


class Collector:
    """Takes OTLP/HTTP trace exports (protobuf) and keeps their spans."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/v1/traces":
                    collector.take(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def take(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource.resource.attributes}
            for scope in resource.scope_spans:
                for span in scope.spans:
                    with self.lock:
                        attributes = {a.key: a.value.string_value for a in span.attributes}
                        self.spans.append(
                            {
                                "name": span.name,
                                "kind": span.kind,
                                "attributes": attributes,
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent": span.parent_span_id.hex(),
                                "scope": scope.scope.name,
                                "service": service.get("service.name"),
                            }
                        )

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.spans)


@pytest.fixture
def collector() -> Iterator[Collector]:
    found = Collector()
    found.thread.start()
    yield found
    found.server.shutdown()


def _env(tmp_path: Path, collector: Collector, service: str, **extra: str) -> dict[str, str]:
    return clean_env(
        tmp_path / "data",
        TIDINGS_TRACING="true",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.port}",
        OTEL_SERVICE_NAME=service,
        OTEL_BSP_SCHEDULE_DELAY="100",  # export within 0.1 s instead of 5
        **extra,
    )


def _post_as_new_user(base: str, name: str) -> None:
    body = {"username": name, "email": f"{name}@example.com", "password": "Pa55-w0rd-T1dings"}
    assert httpx2.post(f"{base}/api/v1/accounts", json=body, timeout=10).status_code == 201
    grant = {"grant_type": "password", "username": name, "password": body["password"]}
    token = httpx2.post(f"{base}/api/v1/auth/token", data=grant, timeout=10).json()
    posted = httpx2.post(
        f"{base}/api/v1/posts",
        json={"text": "traced"},
        headers={"Authorization": f"Bearer {token['access_token']}"},
        timeout=10,
    )
    assert posted.status_code == 201, posted.text


def _consumers_of_the_post(collector: Collector) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The span of ``POST /api/v1/posts`` and the consumer spans in its trace (waits ≤ 30 s
    for both)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # bounded
        spans = collector.snapshot()
        posts = [s for s in spans if s["name"] == "POST /api/v1/posts"]
        if posts:
            consumed = [
                s
                for s in spans
                if s["trace_id"] == posts[0]["trace_id"] and s["name"] == "consume post.created"
            ]
            if consumed:
                return posts[0], consumed
        time.sleep(0.1)
    names = sorted({s["name"] for s in collector.snapshot()})
    pytest.fail(f"no consumer span in the post's trace within 30 s: {names}")


def _only_requests_and_consumers_start_traces(spans: list[dict[str, Any]]) -> None:
    """The relay's polling and the broker's reads (SQL and Redis with no span around them)
    start no trace of their own: every root is a request or a consumer."""
    server, consumer = 2, 5  # SpanKind in OTLP: SPAN_KIND_SERVER, SPAN_KIND_CONSUMER
    roots = [(s["name"], s["kind"]) for s in spans if not s["parent"]]
    assert roots
    assert all(kind in (server, consumer) for _, kind in roots), roots


def test_a_separate_worker_continues_the_requests_trace(
    tmp_path: Path, collector: Collector
) -> None:
    """The relay and consumers in `tidings worker` (Redis broker): the event carries the
    request's trace through the outbox, and the worker's spans join it."""
    port = free_port()
    redis.Redis(db=12).flushdb()  # the stream of an earlier run
    shared = {
        "TIDINGS_BROKER": "redis",
        "TIDINGS_BROKER_URL": "redis://127.0.0.1:6379/12",
        "TIDINGS_RELAY_IN_API": "false",
        "TIDINGS_ROW_CACHE": "none",
    }
    api = subprocess.Popen(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "tidings", "serve", "--port", str(port)],
        env=_env(tmp_path, collector, "tidings-api", **shared),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker: subprocess.Popen[bytes] | None = None
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(f"{base}/livez", api, "the server")  # migrated: the worker may start
        worker = subprocess.Popen(
            [sys.executable, "-m", "tidings", "worker"],
            env=_env(tmp_path, collector, "tidings-worker", **shared),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _post_as_new_user(base, "wes")
        request, consumed = _consumers_of_the_post(collector)
    finally:
        for proc in (worker, api):
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
    assert request["service"] == "tidings-api"
    assert {s["service"] for s in consumed} == {"tidings-worker"}, consumed
    assert all(s["parent"] for s in consumed)  # children, not roots of traces of their own
    spans = collector.snapshot()
    under_consumers = [
        s
        for s in spans
        if s["parent"] in {c["span_id"] for c in consumed} and "sqlalchemy" in s["scope"]
    ]
    assert under_consumers, "the consumers' SQL is not in their spans"
    _only_requests_and_consumers_start_traces(spans)


def test_requests_and_their_sql_are_traced_and_logged(tmp_path: Path, collector: Collector) -> None:
    port = free_port()
    env = _env(
        tmp_path,
        collector,
        "tidings-under-test",
        TIDINGS_LOG_LEVEL="INFO",
        TIDINGS_LOG_FORMAT="json",
    )
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "tidings", "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_up(f"{base}/livez", proc, "the server")
            body = {"username": "tia", "email": "tia@example.com", "password": "Pa55-w0rd-T1dings"}
            made = httpx2.post(f"{base}/api/v1/accounts", json=body, timeout=10)
            assert made.status_code == 201, made.text
            request_id = made.headers["x-request-id"]
            _post_as_new_user(base, "tom")  # the embedded default consumes in this process
            _consumers_of_the_post(collector)
            # a provider's code in a query string is a credential for a minute: masked
            httpx2.get(f"{base}/api/v1/auth/github/callback?code=sekrit-42&state=s-43", timeout=10)

            deadline = time.monotonic() + 20
            request_span: dict[str, Any] | None = None
            children: list[dict[str, Any]] = []
            while time.monotonic() < deadline:  # bounded: the batch goes every 0.1 s
                spans = collector.snapshot()
                found = [s for s in spans if s["name"] == "POST /api/v1/accounts"]
                if found:
                    request_span = found[0]
                    children = [
                        s
                        for s in spans
                        if s["trace_id"] == request_span["trace_id"] and "sqlalchemy" in s["scope"]
                    ]
                    if children:
                        break
                time.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)

    spans = collector.snapshot()
    assert request_span is not None, [s["name"] for s in spans]
    assert request_span["service"] == "tidings-under-test"
    assert children, [(s["name"], s["scope"], s["trace_id"][:6], s["parent"][:6]) for s in spans]
    assert not [s for s in spans if s["name"] == "GET /livez"]  # probes are not traced
    callbacks = [s for s in spans if s["name"] == "GET /api/v1/auth/{provider}/callback"]
    assert callbacks, sorted({s["name"] for s in spans})
    query = callbacks[0]["attributes"].get("url.query", "")
    assert "sekrit-42" not in query, query
    assert "s-43" not in query, query
    assert "code=REDACTED" in query, query
    _only_requests_and_consumers_start_traces(spans)
    # the request's log lines carry its trace id
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    traced = {line.get("trace_id") for line in lines if line.get("request_id") == request_id}
    assert request_span["trace_id"] in traced, lines[-5:]


async def test_without_tracing_no_event_keeps_a_trace(
    client: httpx2.AsyncClient, container: Any
) -> None:
    """Off (the default): nothing is written for traces (and nothing of the SDK is needed)."""
    from sqlalchemy import select

    from tests.support.api import sign_up
    from tidings.events.models import OutboxMessage

    who = await sign_up(client, "nat")
    made = await client.post("/api/v1/posts", json={"text": "untraced"}, headers=who.headers)
    assert made.status_code == 201, made.text
    async with container.db.unit_of_work(write=False) as session:
        kept = (await session.scalars(select(OutboxMessage.trace_parent))).all()
    assert kept
    assert set(kept) == {None}


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_tracing_without_an_endpoint_is_refused(tmp_path: Path, command: str) -> None:
    """Nothing would be exported, silently: both refuse to start, saying what is missing."""
    env = clean_env(tmp_path / "data", TIDINGS_TRACING="true", TIDINGS_BROKER="redis")
    args = ["serve", "--port", str(free_port())] if command == "serve" else ["worker"]
    refused = subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "tidings", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2, refused.stderr
    text = " ".join(refused.stderr.split())
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in text
    assert "Traceback" not in refused.stderr
