"""``tidings bench run``: the real HTTP API on loopback under a fixed mix, beside two baselines.

The API (``tidings serve``) and the baselines (:mod:`tidings.bench.baseline`) run as
subprocesses on free loopback ports; the load generator (:mod:`tidings.bench.load`) runs in a
process of its own. Mix per request: 60 % home feed, 30 % a user's timeline, 7 % compose, 2 %
like, 1 % follow; every request carries the access token of one of the seeded users with a
sign-in session (minted with the server's own signing keys, so no password hashing is measured).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import re
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx2

from tidings.bench.load import Request, Tally, drive
from tidings.core.keys import load_key_material
from tidings.core.security import TokenSigner
from tidings.settings import Settings

MIX = (("feed", 60), ("timeline", 30), ("compose", 7), ("like", 2), ("follow", 1))
_POST_ID = re.compile(rb'"id":"(\d+)"')


@dataclass(frozen=True)
class RunConfig:
    concurrency: int = 64
    duration: float = 30.0
    baseline_duration: float = 10.0
    workers: int = 2
    results_dir: Path = Path("bench/results")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _mixed(users: int, tokens: list[str]) -> Any:
    labels = [label for label, weight in MIX for _ in range(weight)]

    def next_request(rng: random.Random, last: bytes | None) -> Request:
        auth = {"Authorization": f"Bearer {rng.choice(tokens)}"}
        label = rng.choice(labels)
        if label == "compose":
            body = json.dumps({"text": f"bench post #tag{rng.randrange(50)}"}).encode()
            headers = {**auth, "Content-Type": "application/json"}
            return "POST", "/api/v1/posts", headers, body, label
        if label == "like" and last and (found := _POST_ID.search(last)):
            return "PUT", f"/api/v1/posts/{found.group(1).decode()}/like", auth, b"", label
        if label == "follow":
            return "PUT", f"/api/v1/users/b{rng.randrange(1, users + 1)}/follow", auth, b"", label
        if label == "timeline":
            path = f"/api/v1/users/b{rng.randrange(1, users + 1)}/posts?limit=20"
            return "GET", path, auth, b"", label
        return "GET", "/api/v1/feed?limit=20", auth, b"", "feed"

    return next_request


def _load_process(kind: str, port: int, concurrency: int, duration: float, extra: Any) -> Tally:
    """Runs in the load-generator process."""
    if kind == "api":
        users, tokens = extra
        next_request = _mixed(users, tokens)
    else:

        def next_request(rng: random.Random, last: bytes | None) -> Request:
            return "GET", f"/{kind}", {}, b"", kind

    tally, wall = asyncio.run(
        drive("127.0.0.1", port, next_request, concurrency=concurrency, duration=duration)
    )
    tally.samples["_wall"] = str(wall)
    return tally


def _summary(tally: Tally) -> dict[str, dict[str, float]]:
    wall = float(tally.samples.pop("_wall"))
    out: dict[str, dict[str, float]] = {}
    for label, values in sorted(tally.latencies.items()):
        ordered = sorted(values)
        out[label] = {
            "requests": len(ordered),
            "rps": round(len(ordered) / wall, 1),
            "p50_ms": round(ordered[len(ordered) // 2] * 1000, 2),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
            "errors": tally.errors.get(label, 0),
        }
    return out


async def _wait_ready(url: str, process: subprocess.Popen[bytes], within: float = 60) -> None:
    deadline = time.monotonic() + within
    async with httpx2.AsyncClient() as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{url}: the server exited with {process.returncode}")
            try:
                if (await client.get(url, timeout=1)).status_code == 200:
                    return
            except httpx2.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} not ready within {within} s")


async def _tokens(settings: Settings) -> tuple[int, list[str]]:
    conn = await asyncpg.connect(asyncpg_dsn(settings.effective_database_url), timeout=10)
    try:
        users = int(await conn.fetchval("SELECT count(*) FROM users"))
        sessions = await conn.fetch("SELECT id, user_id FROM auth_sessions ORDER BY id LIMIT 5000")
    finally:
        await conn.close()
    signer = TokenSigner(
        load_key_material(settings),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_seconds=settings.access_token_ttl_seconds,
    )
    return users, [signer.issue(row["user_id"], row["id"]) for row in sessions]


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module, fixed arguments
        [sys.executable, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


async def run_benchmark(settings: Settings, config: RunConfig) -> dict[str, Any]:
    users, tokens = await _tokens(settings)
    if not tokens:
        raise RuntimeError("no seeded sign-in sessions: run `tidings bench seed` first")
    api_port, base_port = free_port(), free_port()
    env = {
        **os.environ,
        "TIDINGS_RATE_LIMIT_ENABLED": "false",  # the benchmark measures the API, not the limiter
        "TIDINGS_LOG_LEVEL": "WARNING",
        "TIDINGS_DATABASE_URL": settings.effective_database_url,
        "TIDINGS_DATA_DIR": str(settings.data_dir),
        "TIDINGS_FEED_STORE": settings.feed_store,
        "TIDINGS_FEED_KEY_PREFIX": settings.feed_key_prefix,
        "TIDINGS_REDIS_URL": settings.redis_url,
        "TIDINGS_BENCH_DSN": asyncpg_dsn(settings.effective_database_url),
    }
    workers = str(config.workers)
    cli = "from tidings.cli import main; main()"
    api = _start(["-c", cli, "serve", "--port", str(api_port), "--workers", workers], env)
    baseline = _start(
        ["-m", "uvicorn", "tidings.bench.baseline:app", "--port", str(base_port),
         "--workers", workers, "--log-level", "warning", "--no-access-log"],
        env,
    )  # fmt: skip
    results: dict[str, Any] = {}
    try:
        await _wait_ready(f"http://127.0.0.1:{api_port}/livez", api)
        await _wait_ready(f"http://127.0.0.1:{base_port}/json", baseline)
        loop = asyncio.get_running_loop()
        with ProcessPoolExecutor(max_workers=1) as pool:
            for kind, port, duration, extra in (
                ("json", base_port, config.baseline_duration, None),
                ("pk", base_port, config.baseline_duration, None),
                ("api", api_port, config.duration, (users, tokens)),
            ):
                tally = await loop.run_in_executor(
                    pool, _load_process, kind, port, config.concurrency, duration, extra
                )
                results.update(_summary(tally))
                results.setdefault("_error_samples", {}).update(tally.samples)
    finally:
        _stop(api)
        _stop(baseline)
    return _report(settings, config, users, len(tokens), results)


def _commit() -> str:
    git = shutil.which("git")
    if git is None:
        return "unknown"
    try:
        out = subprocess.run(  # noqa: S603 - fixed git invocation
            [git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(  # noqa: S603
            [git, "status", "--porcelain"], capture_output=True, text=True, check=True
        )
        return out.stdout.strip() + ("+uncommitted" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _report(
    settings: Settings, config: RunConfig, users: int, clients: int, results: dict[str, Any]
) -> dict[str, Any]:
    samples = results.pop("_error_samples", {})
    pk = results.get("pk", {}).get("rps") or 0.0
    plain = results.get("json", {}).get("rps") or 0.0
    for row in results.values():
        row["x_pk"] = round(row["rps"] / pk, 3) if pk else None
        row["x_json"] = round(row["rps"] / plain, 3) if plain else None
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}",
        "feed_store": settings.feed_store,
        "users": users,
        "clients": clients,
        "concurrency": config.concurrency,
        "duration_s": config.duration,
        "baseline_duration_s": config.baseline_duration,
        "workers": config.workers,
        "endpoints": results,
        "errors": sum(int(r["errors"]) for r in results.values()),
        "error_samples": samples,
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Benchmark {report['when']} (commit {report['commit']})",
        "",
        f"Machine: {report['machine']}. Feed store: `{report['feed_store']}`; "
        f"{report['users']:,} users, {report['clients']:,} clients; concurrency "
        f"{report['concurrency']}, {report['duration_s']} s (baselines "
        f"{report['baseline_duration_s']} s each); {report['workers']} server workers.",
        "",
        "| endpoint | requests | req/s | p50 ms | p99 ms | errors | x B_pk | x json |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in report["endpoints"].items():
        lines.append(
            f"| {name} | {row['requests']} | {row['rps']} | {row['p50_ms']} | "
            f"{row['p99_ms']} | {row['errors']} | {row['x_pk']} | {row['x_json']} |"
        )
    return "\n".join(lines) + "\n"


def write_results(report: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = report["when"].replace(":", "").replace("-", "")
    path = directory / f"{stamp}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    (directory / f"{stamp}.md").write_text(markdown(report))
    (directory / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    (directory / "latest.md").write_text(markdown(report))
    return path
