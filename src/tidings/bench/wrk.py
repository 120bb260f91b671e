"""The wrk driver: wrk (C, epoll, one thread by default) with ``mix.lua`` for the workloads.

wrk keeps the generator's CPU share small on a 2-core machine, where the Python generator
(:mod:`tidings.bench.load`) would take a core from the server. ``mix.lua`` records a latency
per request under its endpoint label (request ids echoed by the server), so the summary is per
endpoint, computed by the same code as the Python generator's (:func:`tidings.bench.run`).
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from tidings.bench.load import Tally

SCRIPT = "mix.lua"


def wrk_path() -> str | None:
    return shutil.which("wrk")


def wrk_version(wrk: str) -> str:
    try:
        out = subprocess.run(  # noqa: S603 - the wrk found on PATH, fixed arguments
            [wrk, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "wrk (unknown version)"
    first = (out.stdout or out.stderr).splitlines()
    return first[0].split(" Copyright")[0].strip() if first else "wrk (unknown version)"


def threads_for(concurrency: int, wanted: int) -> int:
    """wrk gives each thread ``connections // threads`` connections: a divisor keeps them all."""
    threads = max(1, min(wanted, concurrency))
    while concurrency % threads:
        threads -= 1
    return threads


def parse_output(text: str) -> Tally:
    """The file ``done()`` in ``mix.lua`` writes, per thread: ``L label us us ...``,
    ``E label n``, ``S label sample``, ``X unmatched n``, ``I label in-flight``; then
    ``W duration_us requests connect read write status timeout``."""
    tally = Tally()
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "L":
            label, _, values = rest.partition(" ")
            tally.latencies.setdefault(label, []).extend(int(v) / 1e6 for v in values.split())
        elif kind == "E":
            label, _, count = rest.partition(" ")
            tally.errors[label] = tally.errors.get(label, 0) + int(count)
        elif kind == "S":
            label, _, sample = rest.partition(" ")
            tally.samples.setdefault(label, sample[:700])
        elif kind == "I":  # still in flight when wrk stopped: not in the percentiles
            label, _, count = rest.partition(" ")
            tally.unfinished[label] = tally.unfinished.get(label, 0) + int(count)
        elif kind == "X":
            unmatched = int(rest.split()[-1])
            if unmatched:  # a response without our request id: never expected, so an error
                tally.errors["unmatched"] = tally.errors.get("unmatched", 0) + unmatched
                tally.latencies.setdefault("unmatched", [])
        elif kind == "W":
            duration_us, _requests, connect, read, write, _status, timeout = map(int, rest.split())
            tally.wall = duration_us / 1e6
            socket = connect + read + write + timeout  # status errors are counted per label
            if socket:
                tally.errors["socket"] = socket
                tally.latencies.setdefault("socket", [])
                tally.samples.setdefault(
                    "socket", f"connect {connect}, read {read}, write {write}, timeout {timeout}"
                )
    return tally


async def drive_wrk(
    wrk: str,
    port: int,
    mode: str,
    data_file: Path,
    *,
    concurrency: int,
    duration: float,
    threads: int = 1,
    seed: int = 1,
) -> Tally:
    """One wrk run (bounded: ``-d`` seconds, killed after ``-d`` + 120 s)."""
    seconds = max(1, math.ceil(duration))
    with (
        resources.as_file(resources.files("tidings.bench") / SCRIPT) as script,
        tempfile.TemporaryDirectory(prefix="tidings-wrk-") as tmp,
    ):
        out = Path(tmp) / "out.txt"
        command = [
            wrk,
            f"-t{threads_for(concurrency, threads)}",
            f"-c{concurrency}",
            f"-d{seconds}s",
            "--timeout",
            "30s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}/",
            "--",
            str(data_file),
            mode,
            str(seed),
        ]
        env = {**os.environ, "TIDINGS_WRK_OUT": str(out)}
        done = await asyncio.to_thread(
            subprocess.run,
            command,
            env=env,
            capture_output=True,
            text=True,
            timeout=seconds + 120,
            check=False,
        )
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
        return parse_output(out.read_text())
