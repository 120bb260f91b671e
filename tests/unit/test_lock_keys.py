"""Advisory-lock keys on PostgreSQL: a pair of users never takes a fixed lock."""

from __future__ import annotations

import re
from pathlib import Path

import tidings
from tidings.audit.service import _ADVISORY_LOCK_KEY
from tidings.graph.repository import PAIR_KEY_SPACE, _pair_key


def test_pair_keys_never_meet_the_audit_or_migration_lock() -> None:
    # env.py runs Alembic when imported: its constant is read from the text
    env = (Path(tidings.__file__).parent / "migrations" / "env.py").read_text()
    found = re.search(r"^MIGRATION_LOCK_KEY = (0x[0-9A-Fa-f_]+)$", env, re.MULTILINE)
    assert found, "MIGRATION_LOCK_KEY not found in migrations/env.py"
    migration_key = int(found.group(1), 16)
    assert migration_key < PAIR_KEY_SPACE
    assert _ADVISORY_LOCK_KEY < PAIR_KEY_SPACE
    # before the key space was split, this pair's key was the audit chain's
    old_key = ((2048 * 1_000_003) ^ 986981) & 0x7FFF_FFFF_FFFF_FFFF
    assert old_key == _ADVISORY_LOCK_KEY
    for a, b in ((2048, 986981), (1, 2), (2**62, 2**63 - 1), (7, 7)):
        key = _pair_key(a, b)
        assert key == _pair_key(b, a)
        assert PAIR_KEY_SPACE <= key < 2**63  # a signed bigint, bit 62 set
