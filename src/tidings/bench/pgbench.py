"""PostgreSQL's own ceilings, measured with ``pgbench`` on the same server and loopback:

* TPC-B (pgbench's built-in script) in a scratch database ``<db>_pgbench``, created, initialised
  with ``pgbench -i -s 1`` and dropped by the run: the reference for the write endpoints
  (like, follow). Scale 1 has one branch row every transaction updates, so TPC-B itself is
  contention-bound at high client counts; that is the issue's reference as written.
* The home feed's pull query alone: the SQL :func:`tidings.timelines.repository.home_feed_lateral`
  builds for ``GET /api/v1/feed?limit=20`` (21 rows: one more than the page), compiled with
  literal values, the viewer id replaced by a pgbench variable drawn uniformly from the
  benchmark's clients (read only, ``-n``, against the benchmark database). The reference for the
  pull feed (``TIDINGS_FEED_STORE=none``).

Both run with the API's session settings (``jit=off``, ``plan_cache_mode=force_custom_plan``),
``-j min(2, clients)`` threads, for whole seconds, and log every transaction (``-l``) so the
latency percentiles are computed like the HTTP ones.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url

from tidings.timelines.repository import home_feed_lateral
from tidings.timelines.schemas import TimelineFilters

PAGE = 20
SCALE = 1
_TPS = re.compile(r"^tps = ([\d.]+) \((?:without|excluding)", re.MULTILINE)
_OPTIONS = "-c jit=off -c plan_cache_mode=force_custom_plan"


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    user: str
    password: str | None
    database: str

    @classmethod
    def from_url(cls, url: str) -> Target:
        parsed = make_url(url)
        return cls(
            host=parsed.host or "127.0.0.1",
            port=parsed.port or 5432,
            user=parsed.username or "postgres",
            password=parsed.password,
            database=parsed.database or "postgres",
        )

    def env(self) -> dict[str, str]:
        env = {**os.environ, "PGOPTIONS": _OPTIONS}
        if self.password:
            env["PGPASSWORD"] = self.password
        return env

    def args(self, database: str) -> list[str]:
        return ["-h", self.host, "-p", str(self.port), "-U", self.user, database]

    def dsn(self, database: str) -> str:
        auth = f"{self.user}:{self.password}" if self.password else self.user
        return f"postgresql://{auth}@{self.host}:{self.port}/{database}"


def pgbench_path() -> str | None:
    return shutil.which("pgbench")


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def feed_script(viewer_ids: list[int]) -> str:
    """The pgbench script: the pull feed query for a random one of ``viewer_ids``."""
    probe = 8_000_000_000_000_000_001  # a placeholder no real literal in the query equals
    statement = home_feed_lateral(probe, PAGE + 1, None, TimelineFilters())
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    compiled = statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
    sql = str(compiled).replace(str(probe), ":uid")
    ids = sorted(viewer_ids)
    steps = {b - a for a, b in itertools.pairwise(ids)}
    if len(ids) > 1 and len(steps) == 1:  # the seeded ids: an arithmetic progression
        (step,) = steps
        pick = f"\\set i random(0, {len(ids) - 1})\n\\set uid {ids[0]} + :i * {step}\n"
    else:  # any other set: one extra primary-key read per transaction
        pick = (
            f"\\set i random(0, {len(ids) - 1})\n"
            "SELECT user_id AS uid FROM auth_sessions ORDER BY id OFFSET :i LIMIT 1 \\gset\n"
        )
    return pick + sql + ";\n"


def _percentiles(log_dir: Path) -> dict[str, float]:
    """p50/p90/p99 (ms) from pgbench's per-transaction logs (3rd field: latency in µs)."""
    values: list[int] = []
    for path in log_dir.glob("pgbench_log*"):
        for line in path.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3:
                values.append(int(fields[2]))
    values.sort()
    if not values:
        return {}

    def pct(q: float) -> float:
        return round(values[min(len(values) - 1, int(len(values) * q))] / 1000, 2)

    return {"p50_ms": pct(0.5), "p90_ms": pct(0.9), "p99_ms": pct(0.99)}


async def _pgbench(pgbench: str, target: Target, args: list[str], limit_s: float) -> str:
    done = await asyncio.to_thread(
        subprocess.run,
        [pgbench, *args],
        env=target.env(),
        capture_output=True,
        text=True,
        timeout=limit_s,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pgbench {' '.join(args[:3])} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


async def _timed(
    pgbench: str, target: Target, database: str, clients: int, seconds: int, extra: list[str]
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tidings-pgbench-") as tmp:
        args = [
            *extra,
            "-c",
            str(clients),
            "-j",
            str(min(2, clients)),
            "-T",
            str(seconds),
            "-l",
            "--log-prefix",
            str(Path(tmp) / "pgbench_log"),
            *target.args(database),
        ]
        out = await _pgbench(pgbench, target, args, seconds + 120)
        found = _TPS.search(out)
        if found is None:
            raise RuntimeError(f"no tps in pgbench output: {out[-500:]}")
        return {"tps": round(float(found.group(1)), 1), **_percentiles(Path(tmp))}


async def _admin(target: Target, sql: str) -> None:
    conn = await asyncpg.connect(target.dsn("postgres"), timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def run_pgbench(
    url: str, levels: list[int], duration: float, viewer_ids: list[int]
) -> dict[str, Any]:
    """``{"tpcb": {c: row}, "feed_sql": {c: row}, ...}``, or ``{"skipped": why}``."""
    pgbench = pgbench_path()
    if pgbench is None:
        return {"skipped": "pgbench is not on PATH"}
    target = Target.from_url(url)
    seconds = max(1, math.ceil(duration))
    scratch = f"{target.database}_pgbench"[:63]
    result: dict[str, Any] = {
        "version": (await _pgbench(pgbench, target, ["--version"], 10)).strip(),
        "scale": SCALE,
        "seconds": seconds,
        "database": scratch,
        "tpcb": {},
        "feed_sql": {},
    }
    await _admin(target, f"DROP DATABASE IF EXISTS {_quoted(scratch)} WITH (FORCE)")
    await _admin(target, f"CREATE DATABASE {_quoted(scratch)}")
    try:
        await _pgbench(pgbench, target, ["-i", "-s", str(SCALE), "-q", *target.args(scratch)], 300)
        for clients in levels:
            result["tpcb"][str(clients)] = await _timed(
                pgbench, target, scratch, clients, seconds, []
            )
    finally:
        await _admin(target, f"DROP DATABASE IF EXISTS {_quoted(scratch)} WITH (FORCE)")
    script = feed_script(viewer_ids)
    result["feed_script"] = script
    with tempfile.TemporaryDirectory(prefix="tidings-pgbench-") as tmp:
        path = Path(tmp) / "feed.sql"
        path.write_text(script)
        for clients in levels:
            result["feed_sql"][str(clients)] = await _timed(
                pgbench, target, target.database, clients, seconds, ["-n", "-f", str(path)]
            )
    return result
