"""The benchmark's storage check: bytes read from whole disks, and the report's warning."""

from __future__ import annotations

from pathlib import Path

from tidings.bench.storage import disk_read_bytes, storage_lines, storage_report

DISKSTATS = """\
   7       0 loop0 10 0 800 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 253       0 vda 100 0 2000 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 253       1 vda1 90 0 1800 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 254       0 zram0 5 0 4000 0 0 0 0 0 0 0 0 0 0 0 0 0 0
   8       0 sdb 1 0 8 0 0 0 0 0 0 0 0 0 0 0 0 0 0
"""


def test_only_whole_disks_count(tmp_path: Path) -> None:
    stats = tmp_path / "diskstats"
    stats.write_text(DISKSTATS)
    block = tmp_path / "block"
    for disk in ("loop0", "vda", "zram0", "sdb"):  # partitions (vda1) are not in /sys/block
        (block / disk).mkdir(parents=True)
    assert disk_read_bytes(stats, block) == (2000 + 8) * 512
    assert disk_read_bytes(tmp_path / "missing", block) is None


def test_a_disk_bound_run_is_flagged() -> None:
    state = {"database_bytes": 7 * 2**30, "shared_buffers": "128MB"}
    quiet = storage_report(state, read_before=None)
    assert quiet["disk_read_bytes"] is None
    assert not quiet["disk_bound"]
    text = "\n".join(storage_lines(quiet))
    assert "the database is 7.0 GiB" in text
    assert "not measured" in text
    assert "Warning" not in text
    bound = {**state, "disk_read_bytes": 3 * 2**30, "disk_bound": True}
    assert "**Warning: the run read 3,072 MiB from disk" in "\n".join(storage_lines(bound))
    assert storage_lines(None) == []  # reports from before the check
