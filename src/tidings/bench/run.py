"""``tidings bench run``: the real HTTP API on loopback under a fixed mix, beside its baselines.

The API (``tidings serve``) and the baselines (:mod:`tidings.bench.baseline`) run as
subprocesses on free loopback ports; the load generator is wrk with ``mix.lua``
(:mod:`tidings.bench.wrk`) when it is on PATH, else the Python one (:mod:`tidings.bench.load`)
in a process of its own. Every request carries the access token of one of the seeded users with
a sign-in session (minted with the server's own signing keys, so no password hashing is
measured); the workloads are in :mod:`tidings.bench.workload`.

Per concurrency level: the ``/json`` baseline (the generator's ceiling) and ``/pk``; the mix
(60 % home feed, 30 % a user's timeline, 7 % compose, 2 % like, 1 % follow); then the feed,
timeline, like and follow each alone. Then, with the server still up, the time until a post is
visible to a follower (:mod:`tidings.bench.visibility`). With ``TIDINGS_FEED_STORE=redis`` a
second server with the pull query only (``none``) serves the feed alone again, so both
``feed (redis)`` and ``feed (pull)`` are measured. With every server stopped: pgbench (TPC-B
and the feed SQL alone, :mod:`tidings.bench.pgbench`) and the fan-out function in process
(:mod:`tidings.bench.fanout`). Results: :mod:`tidings.bench.report`.
"""

from __future__ import annotations

import asyncio
import os
import platform
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx2

from tidings.bench.fanout import fanout_throughput
from tidings.bench.load import Tally, drive
from tidings.bench.pgbench import run_pgbench
from tidings.bench.report import add_ratios, markdown, summarize, targets, write_results
from tidings.bench.storage import database_state, disk_read_bytes, storage_report
from tidings.bench.visibility import settle, time_to_visible
from tidings.bench.workload import Workload, requests_for
from tidings.bench.wrk import drive_wrk, threads_for, wrk_path, wrk_version
from tidings.core.keys import load_key_material
from tidings.core.security import TokenSigner
from tidings.settings import Settings

__all__ = ["RunConfig", "asyncpg_dsn", "markdown", "run_benchmark", "write_results"]

ALONE = ("feed", "timeline", "like", "follow")
MAX_CLIENTS = 5000
LIKE_TARGETS = 5000
_SERVER_ERROR = re.compile(r"error|exception|traceback", re.IGNORECASE)


@dataclass(frozen=True)
class RunConfig:
    concurrency: tuple[int, ...] = (16, 64)
    duration: float = 30.0  # the mix, per level
    baseline_duration: float = 10.0  # each baseline and each endpoint alone, per level
    workers: int = 2
    results_dir: Path = Path("bench/results")
    generator: str = "auto"  # wrk | python | auto (wrk when on PATH)
    wrk_threads: int = 1
    warmup: float = 1.0
    pgbench: bool = True
    phases: tuple[str, ...] = field(default=ALONE)  # endpoints measured alone
    # consumers (fan-out, notifications, webhooks) in a separate `tidings worker` on the Redis
    # broker, as in production; False: in the API processes (the embedded in-memory broker)
    worker: bool = False
    # a SQLite copy of the seed (`tidings bench to-sqlite`): the embedded default, as `make run`
    # starts it (one process, pull feed, in-memory row cache), serves the feed and timelines
    sqlite: Path | None = None
    # the request sequence: each generator run draws from seed + its ordinal (so no two phases
    # ask for the same clients in the same order); None draws a seed for this run
    seed: int | None = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


# --- generators ---------------------------------------------------------------------------------


def _python_process(
    mode: str, port: int, concurrency: int, duration: float, w: Workload, seed: int
) -> Tally:
    """Runs in the load-generator process."""
    return asyncio.run(
        drive(
            "127.0.0.1",
            port,
            requests_for(mode, w),
            concurrency=concurrency,
            duration=duration,
            seed=seed,
        )
    )


class Generator:
    def __init__(
        self, config: RunConfig, workload: Workload, directory: Path, seed: int = 1
    ) -> None:
        wanted = config.generator
        self.wrk = wrk_path() if wanted in ("auto", "wrk") else None
        if wanted == "wrk" and self.wrk is None:
            raise RuntimeError("--generator wrk: wrk is not on PATH")
        self.name = "wrk" if self.wrk else "python"
        self.threads = config.wrk_threads
        self.workload = workload
        self.data = directory / "workload.txt"
        workload.write(self.data)
        self.pool = ProcessPoolExecutor(max_workers=1) if self.wrk is None else None
        self.seed = seed
        self.runs = 0  # each run draws its requests from seed + its ordinal

    def detail(self, levels: tuple[int, ...]) -> str:
        if self.wrk:
            threads = sorted({threads_for(c, self.threads) for c in levels})
            return (
                f"{wrk_version(self.wrk)}, {'/'.join(map(str, threads))} thread(s), "
                "Lua script src/tidings/bench/mix.lua"
            )
        return f"Python asyncio closed loop in one process, Python {platform.python_version()}"

    async def run(self, port: int, mode: str, concurrency: int, duration: float) -> Tally:
        self.runs += 1
        seed = self.seed + self.runs
        if self.wrk:
            return await drive_wrk(
                self.wrk,
                port,
                mode,
                self.data,
                concurrency=concurrency,
                duration=duration,
                threads=self.threads,
                seed=seed,
            )
        assert self.pool is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.pool, _python_process, mode, port, concurrency, duration, self.workload, seed
        )

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


# --- servers ------------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _start(name: str, args: list[str], env: dict[str, str], directory: Path, port: int) -> Server:
    log = directory / f"{name}.log"
    with log.open("wb") as stderr:  # a file, not a pipe: a chatty server never blocks on it
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, fixed args
            [sys.executable, *args], env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )
    return Server(name, process, log, port)


def _api(env: dict[str, str], workers: int, directory: Path, name: str) -> Server:
    port = free_port()
    cli = "from tidings.cli import main; main()"
    args = ["-c", cli, "serve", "--port", str(port), "--workers", str(workers)]
    return _start(name, args, env, directory, port)


def _stop(server: Server) -> None:
    process = server.process
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


async def _wait_ready(server: Server, path: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    async with httpx2.AsyncClient() as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                tail = server.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{server.name} exited with {server.process.returncode}: {tail}")
            try:
                if (await client.get(server.url + path, timeout=1)).status_code == 200:
                    return
            except httpx2.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{server.name} not ready within {within} s")


def _server_errors(servers: list[Server], limit: int = 12) -> list[str]:
    """Distinct error lines from the servers' logs (they log at WARNING and above)."""
    seen: list[str] = []
    for server in servers:
        if not server.log.exists():
            continue
        for line in server.log.read_text(errors="replace").splitlines():
            line = line.strip()
            if _SERVER_ERROR.search(line) and f"{server.name}: {line[:300]}" not in seen:
                seen.append(f"{server.name}: {line[:300]}")
                if len(seen) >= limit:
                    return seen
    return seen


# --- data ---------------------------------------------------------------------------------------


async def outbox_state(settings: Settings) -> tuple[int, int]:
    """(events no relay has picked up yet, the newest event's id). A run that starts with many
    of the first shares the CPUs with the work of applying them; the second tells this run's
    events from earlier ones."""
    conn = await asyncpg.connect(asyncpg_dsn(settings.effective_database_url), timeout=10)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE published_at IS NULL AND attempts = 0),"
            " coalesce(max(id), 0) FROM outbox"
        )
        assert row is not None
        return int(row[0]), int(row[1])
    finally:
        await conn.close()


async def load_workload(settings: Settings) -> tuple[Workload, dict[int, str]]:
    """The workload, and user id -> token of the clients."""
    conn = await asyncpg.connect(asyncpg_dsn(settings.effective_database_url), timeout=10)
    try:
        users = int(await conn.fetchval("SELECT count(*) FROM users"))
        sessions = await conn.fetch(
            "SELECT s.id, s.user_id, u.username FROM auth_sessions s "
            "JOIN users u ON u.id = s.user_id ORDER BY s.id LIMIT $1",
            MAX_CLIENTS,
        )
        posts = await conn.fetch(
            "SELECT id FROM posts WHERE visibility = 'public' AND kind = 'post' "
            "AND deleted_at IS NULL ORDER BY id DESC LIMIT $1",
            LIKE_TARGETS,
        )
    finally:
        await conn.close()
    signer = TokenSigner(
        load_key_material(settings),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_seconds=settings.access_token_ttl_seconds,
    )
    tokens = {int(row["user_id"]): signer.issue(row["user_id"], row["id"]) for row in sessions}
    clients = [(tokens[int(row["user_id"])], str(row["username"])) for row in sessions]
    workload = Workload(users=users, clients=clients, posts=[int(r["id"]) for r in posts])
    return workload, tokens


# --- the run ------------------------------------------------------------------------------------


class _Results:
    def __init__(self, levels: tuple[int, ...]) -> None:
        self.levels: dict[str, dict[str, Any]] = {str(c): {"rows": {}} for c in levels}
        self.samples: dict[str, str] = {}
        self.seconds: dict[str, float] = {}  # wall time per phase of the run
        self._mark = time.monotonic()

    def lap(self, phase: str) -> None:
        now = time.monotonic()
        self.seconds[phase] = round(self.seconds.get(phase, 0.0) + now - self._mark, 1)
        self._mark = now

    def add(
        self,
        level: int,
        tally: Tally,
        phase: str,
        names: dict[str, str] | None = None,
        expect: str | None = None,
    ) -> None:
        rows = summarize(tally, phase, names, expect)
        self.levels[str(level)]["rows"].update(rows)
        for label, sample in tally.samples.items():
            name = (names or {}).get(label, label)
            self.samples.setdefault(f"c={level} {name} ({phase})", sample)


async def run_benchmark(settings: Settings, config: RunConfig) -> dict[str, Any]:
    workload, tokens = await load_workload(settings)
    backlog, last_event = await outbox_state(settings)
    database = await database_state(asyncpg_dsn(settings.effective_database_url))
    read_before = disk_read_bytes()
    if not workload.clients:
        raise RuntimeError("no seeded sign-in sessions: run `tidings bench seed` first")
    store = settings.feed_store
    seed = config.seed if config.seed is not None else random.SystemRandom().randrange(1, 10**6)
    env = {
        **os.environ,
        "TIDINGS_RATE_LIMIT_ENABLED": "false",  # the benchmark measures the API, not the limiter
        "TIDINGS_LOG_LEVEL": "WARNING",
        "TIDINGS_DATABASE_URL": settings.effective_database_url,
        "TIDINGS_DATA_DIR": str(settings.data_dir),
        "TIDINGS_FEED_STORE": store,
        "TIDINGS_ROW_CACHE": settings.row_cache,
        "TIDINGS_FEED_KEY_PREFIX": settings.feed_key_prefix,
        # a row cache of its own: every run starts cold, whatever earlier runs (or servers
        # started by hand) left in Redis
        "TIDINGS_CACHE_KEY_PREFIX": f"{settings.cache_key_prefix}bench{seed}:",
        "TIDINGS_REDIS_URL": settings.redis_url,
        "TIDINGS_BENCH_DSN": asyncpg_dsn(settings.effective_database_url),
    }
    if config.worker:  # the API only writes the outbox; the worker relays and consumes
        env |= {"TIDINGS_BROKER": "redis", "TIDINGS_BROKER_URL": settings.redis_url}
    results = _Results(config.concurrency)
    feed_row = "feed (redis)" if store == "redis" else "feed (pull)"
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="tidings-bench-") as tmp:
        directory = Path(tmp)
        generator = Generator(config, workload, directory, seed)
        try:
            api = _api(env, config.workers, directory, "api")
            servers.append(api)
            worker: Server | None = None
            if config.worker:
                cli = "from tidings.cli import main; main()"
                worker = _start("worker", ["-c", cli, "worker"], env, directory, 0)
                servers.append(worker)
            pull: Server | None = None
            if store == "redis" and "feed" in config.phases:
                # pull query only, and no relay: with no store its feed consumer would mark
                # events done without fanning them out. Started now: the boots overlap.
                pull_env = {
                    **env,
                    "TIDINGS_FEED_STORE": "none",
                    "TIDINGS_ROW_CACHE": "none",  # the fallback: no Redis at all
                    "TIDINGS_RELAY_IN_API": "false",
                }
                pull = _api(pull_env, config.workers, directory, "pull")
                servers.append(pull)
            port = free_port()
            baseline = _start(
                "baseline",
                ["-m", "uvicorn", "tidings.bench.baseline:app", "--port", str(port),
                 "--workers", str(config.workers), "--log-level", "warning", "--no-access-log"],
                env,
                directory,
                port,
            )  # fmt: skip
            servers.append(baseline)
            await _wait_ready(api, "/livez")
            await _wait_ready(baseline, "/json")
            if pull is not None:
                await _wait_ready(pull, "/livez")
            results.lap("start servers")
            if config.warmup:  # pools filled, code paths warm: not measured
                await generator.run(api.port, "mix", max(config.concurrency), config.warmup)
                results.lap("warm-up")
            for c in config.concurrency:
                for mode in ("json", "pk"):
                    tally = await generator.run(baseline.port, mode, c, config.baseline_duration)
                    results.add(c, tally, "baseline", expect=mode)
                results.lap("baselines")
                results.add(c, await generator.run(api.port, "mix", c, config.duration), "mix")
                results.lap("mix")
                await settle(asyncpg_dsn(settings.effective_database_url), last_event)
                results.lap("settle")
                for mode in config.phases:
                    tally = await generator.run(api.port, mode, c, config.baseline_duration)
                    name = feed_row if mode == "feed" else f"{mode} (alone)"
                    results.add(c, tally, "alone", {mode: name}, expect=mode)
                    if mode == "feed" and store == "redis":
                        # The same requests again (same seed: the same readers in the same
                        # order), seconds later: every page's rows are in the row cache now.
                        # The row above is mostly first reads: over thousands of readers a
                        # page's posts are seldom cached yet.
                        tally = await generator.run(api.port, mode, c, config.baseline_duration)
                        results.add(c, tally, "alone", {mode: WARM_FEED}, expect=mode)
                results.lap("alone")
            visibility = await time_to_visible(
                api.url,
                asyncpg_dsn(settings.effective_database_url),
                tokens,
                settings.fanout_threshold,
            )
            results.lap("time to visible")
            _stop(api)
            if worker is not None:  # its backlog must not share the CPUs with the pull phase
                _stop(worker)
            if pull is not None:
                if config.warmup:
                    await generator.run(pull.port, "feed", max(config.concurrency), config.warmup)
                    results.lap("warm-up")
                for c in config.concurrency:
                    tally = await generator.run(pull.port, "feed", c, config.baseline_duration)
                    results.add(c, tally, "alone", {"feed": "feed (pull)"}, expect="feed")
                _stop(pull)
                results.lap("pull feed")
            if config.sqlite is not None:
                await _embedded(config, env, directory, generator, results, servers)
        finally:
            for server in servers:
                _stop(server)
            generator.close()
        server_errors = _server_errors(servers)
        detail = generator.detail(config.concurrency)
        name = generator.name
    pgbench: dict[str, Any] = {"skipped": "--no-pgbench"}
    if config.pgbench:
        pgbench = await run_pgbench(
            settings.effective_database_url,
            list(config.concurrency),
            config.baseline_duration,
            sorted(tokens),
        )
        results.lap("pgbench")
    fanout = await fanout_throughput(settings)
    results.lap("fan-out")
    report = _report(settings, config, workload, results)
    report["seed"] = seed
    report["outbox_backlog_at_start"] = backlog
    report["storage"] = storage_report(database, read_before)
    report |= {"pgbench": pgbench, "fanout": fanout, "visibility": visibility}
    report["server_errors"] = server_errors
    report["generator"] = {"name": name, "detail": detail, "note": _generator_note(name, report)}
    add_ratios(report["levels"], pgbench)
    report["targets"] = targets(report)
    return report


WARM_FEED = "feed (redis, warm)"  # the feed alone again: the same readers, a warm row cache
EMBEDDED = ("feed", "timeline")  # what the embedded default serves alone


async def _embedded(
    config: RunConfig,
    env: dict[str, str],
    directory: Path,
    generator: Generator,
    results: _Results,
    servers: list[Server],
) -> None:
    """The embedded default on the SQLite copy: one process with its defaults (pull feed, the
    in-memory row cache, the in-process broker); the feed and timelines alone per level."""
    assert config.sqlite is not None
    embedded_env = {
        name: value
        for name, value in env.items()
        if name not in ("TIDINGS_BROKER_URL", "TIDINGS_REDIS_URL", "TIDINGS_FEED_KEY_PREFIX")
    }
    embedded_env |= {
        "TIDINGS_DATABASE_URL": f"sqlite+aiosqlite:///{config.sqlite.resolve()}",
        "TIDINGS_FEED_STORE": "none",
        "TIDINGS_ROW_CACHE": "auto",
        "TIDINGS_BROKER": "memory",
        "TIDINGS_RELAY_IN_API": "true",  # what makes `auto` the in-memory cache
    }
    server = _api(embedded_env, 1, directory, "embedded")
    servers.append(server)
    await _wait_ready(server, "/livez")
    if config.warmup:
        await generator.run(server.port, "feed", max(config.concurrency), config.warmup)
    for c in config.concurrency:
        for mode in EMBEDDED:
            tally = await generator.run(server.port, mode, c, config.baseline_duration)
            results.add(c, tally, "alone", {mode: f"{mode} (embedded)"}, expect=mode)
    _stop(server)
    results.lap("embedded")


def _generator_note(name: str, report: dict[str, Any]) -> str:
    ceiling = ", ".join(
        f"{level} connections: {data['rows'].get('json', {}).get('rps', 0):,.0f} req/s"
        for level, data in report["levels"].items()
    )
    how = (
        "wrk (C, epoll) with the Lua script; one thread by default, so it takes at most one "
        "core from the server on a 2-core machine. Per endpoint latencies come from the script "
        "(X-Request-ID echoed by the server), the same instants wrk itself measures."
        if name == "wrk"
        else "the Python generator (wrk is not on PATH): one asyncio process, which itself "
        "needs most of a core at a few thousand requests per second."
    )
    return (
        f"Generator ceiling: the rate it reaches against the constant `/json` baseline through "
        f"the same code path ({ceiling}). The generator shares the CPUs with the servers, so "
        f"this is an upper bound of what any row can show; a row near x json 1 is bound by the "
        f"generator or the CPU, not the endpoint. Generator: {how}"
    )


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


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        memory = f", {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB"
    return (
        f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus ({cpu}){memory}, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def _report(
    settings: Settings, config: RunConfig, workload: Workload, results: _Results
) -> dict[str, Any]:
    errors = sum(
        int(row["errors"]) for data in results.levels.values() for row in data["rows"].values()
    )
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "machine": _machine(),
        "feed_store": settings.feed_store,
        "row_cache": settings.effective_row_cache,
        "users": workload.users,
        "clients": len(workload.clients),
        "concurrency": list(config.concurrency),
        "duration_s": config.duration,
        "baseline_duration_s": config.baseline_duration,
        "workers": config.workers,
        "consumers": "tidings worker (Redis broker)" if config.worker else "in the API processes",
        "embedded": str(config.sqlite) if config.sqlite is not None else None,
        "levels": results.levels,
        "errors": errors,
        "error_samples": results.samples,
        "phase_seconds": results.seconds,
    }
