"""Whether a run measured the code or the disk: the database's size, PostgreSQL's shared
buffers, and how much the machine read from its disks during the run.

A VM whose host takes page cache back (seen on this machine kind: ``virtio_balloon``, 3.9 of
7.2 GB of database files resident minutes after reading them all) turns every row that touches
PostgreSQL into a disk benchmark; the report then says so rather than leave a reader to guess.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg

SKIPPED_DEVICES = ("loop", "ram", "zram")
# more than this share of the database read from disk during a run: a warning in the report
DISK_BOUND_SHARE = 0.05


def disk_read_bytes(
    diskstats: Path = Path("/proc/diskstats"), block: Path = Path("/sys/block")
) -> int | None:
    """Bytes read from whole block devices since boot (None where /proc/diskstats is not)."""
    try:
        text = diskstats.read_text()
    except OSError:
        return None
    total = 0
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[2].startswith(SKIPPED_DEVICES):
            continue
        if not (block / fields[2]).exists():  # a partition of a disk counted already
            continue
        total += int(fields[5]) * 512  # sectors read, always 512 bytes in this file
    return total


async def database_state(dsn: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        row = await conn.fetchrow(
            "SELECT pg_database_size(current_database()), current_setting('shared_buffers')"
        )
        assert row is not None
        return {"database_bytes": int(row[0]), "shared_buffers": str(row[1])}
    finally:
        await conn.close()


def storage_report(state: dict[str, Any], read_before: int | None) -> dict[str, Any]:
    """``state`` with the bytes read from disk since ``read_before`` and whether that makes
    the run disk-bound."""
    after = disk_read_bytes()
    read = None if after is None or read_before is None else after - read_before
    bound = read is not None and read > DISK_BOUND_SHARE * state["database_bytes"]
    return {**state, "disk_read_bytes": read, "disk_bound": bound}


def storage_lines(storage: dict[str, Any] | None) -> list[str]:
    """The report's lines about storage (nothing for reports from before it was measured)."""
    if not storage:
        return []
    read = storage.get("disk_read_bytes")
    shown = "not measured" if read is None else f"{read / 2**20:,.0f} MiB"
    lines = [
        f"Storage: the database is {storage['database_bytes'] / 2**30:,.1f} GiB, PostgreSQL's "
        f"shared_buffers {storage['shared_buffers']}; read from disk during the run: {shown}.",
        "",
    ]
    if storage.get("disk_bound"):
        lines += [
            f"**Warning: the run read {shown} from disk, more than "
            f"{DISK_BOUND_SHARE:.0%} of the database**: the rows that touch PostgreSQL "
            "measured a cold or too small cache (or a host that takes page cache back), not "
            "only the code. Warm the cache (or size shared_buffers to the data and load it "
            "with pg_prewarm) and run again.",
            "",
        ]
    return lines
