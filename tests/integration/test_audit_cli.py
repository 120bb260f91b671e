"""`tidings audit verify` names the first tampered row."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tidings.cli import app
from tidings.settings import get_settings


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    db = tmp_path / "audit.db"
    monkeypatch.setenv("TIDINGS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TIDINGS_DATABASE_URL", f"sqlite+aiosqlite:///{db}")
    monkeypatch.setenv("TIDINGS_PASSWORD_HASH_MEMORY_KIB", "1024")
    monkeypatch.setenv("TIDINGS_PASSWORD_HASH_TIME_COST", "1")
    get_settings.cache_clear()
    yield db
    get_settings.cache_clear()


def test_verify_passes_then_names_the_edited_row(cli_env: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    for name in ("first_admin", "second_admin"):
        created = runner.invoke(
            app,
            [
                "users",
                "create-admin",
                "--username",
                name,
                "--email",
                f"{name}@example.com",
                "--password",
                "a-long-password",
            ],
        )
        assert created.exit_code == 0, created.output
    ok = runner.invoke(app, ["audit", "verify"])
    assert ok.exit_code == 0, ok.output
    assert "2 events verified" in ok.output

    with sqlite3.connect(cli_env) as conn:
        conn.execute("DROP TRIGGER audit_events_no_update")
        conn.execute("UPDATE audit_events SET target_id = '42' WHERE seq = 2")
    broken = runner.invoke(app, ["audit", "verify"])
    assert broken.exit_code == 1
    assert "seq 2" in broken.output
