"""The ``tidings`` command line, run in-process against a temporary SQLite database.

The commands call ``asyncio.run`` themselves, so these are plain (sync) test functions.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from alembic.script import ScriptDirectory
from typer.testing import CliRunner, Result

from tidings.cli import app
from tidings.core.ids import MAX_NODE, SEQUENCE_BITS
from tidings.core.migrate import alembic_config
from tidings.core.writers import ServerLock
from tidings.settings import get_settings

PASSWORD = "a-long-admin-password"
ADMIN = ["users", "create-admin"]
GOOD_SECRET = "Zx8-" + "k3Lm9Qp2Rs7Tv4Wy6Ab1Cd5Ef0Gh" + "_Ij8"


@dataclass
class Env:
    data_dir: Path
    db_path: Path

    @property
    def database_url(self) -> str:
        return f"sqlite+aiosqlite:///{self.db_path}"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    """A clean TIDINGS_* environment pointing at a temporary data dir and SQLite file; the CLI's
    cached settings are dropped before and after."""
    for name in list(os.environ):
        if name.startswith("TIDINGS_"):
            monkeypatch.delenv(name)
    monkeypatch.delenv("CI", raising=False)
    setup = Env(data_dir=tmp_path / "data", db_path=tmp_path / "db" / "cli.db")
    monkeypatch.setenv("TIDINGS_DATA_DIR", str(setup.data_dir))
    monkeypatch.setenv("TIDINGS_DATABASE_URL", setup.database_url)
    monkeypatch.setenv("TIDINGS_LOG_LEVEL", "WARNING")
    # `serve --workers N` writes TIDINGS_ROW_CACHE itself (for the workers it forks): set here,
    # it is put back after the test instead of leaking into the tests that follow
    monkeypatch.setenv("TIDINGS_ROW_CACHE", "auto")
    # and `serve --workers N` points PROMETHEUS_MULTIPROC_DIR at a directory of its own
    # (set, then removed: monkeypatch puts back "absent" whatever serve wrote meanwhile)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "unset")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    # Cheap argon2 parameters, as in the rest of the suite.
    monkeypatch.setenv("TIDINGS_PASSWORD_HASH_TIME_COST", "1")
    monkeypatch.setenv("TIDINGS_PASSWORD_HASH_MEMORY_KIB", "1024")
    monkeypatch.setenv("TIDINGS_PASSWORD_HASH_PARALLELISM", "1")
    get_settings.cache_clear()
    yield setup
    get_settings.cache_clear()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record uvicorn.run instead of serving; a test that reaches it sees the call."""
    calls: list[dict[str, Any]] = []

    def fake_run(target: str, **kwargs: Any) -> None:
        calls.append({"target": target, **kwargs})

    monkeypatch.setattr(uvicorn, "run", fake_run)
    return calls


def _text(result: Result) -> str:
    """Everything printed (stdout and stderr), with rich's line wrapping undone."""
    return " ".join(result.output.split())


def _invoke(runner: CliRunner, args: list[str], **kwargs: Any) -> Result:
    result = runner.invoke(app, args, **kwargs)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def _users(db_path: Path) -> dict[str, tuple[str, str, int, str | None]]:
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute(
            "SELECT username_key, email, role, email_verified, password_hash FROM users"
        ).fetchall()
    return {row[0]: (row[1], row[2], row[3], row[4]) for row in rows}


def _migrate(runner: CliRunner) -> None:
    result = _invoke(runner, ["migrate"])
    assert result.exit_code == 0, result.output


# --- help and keys -----------------------------------------------------------------------------


def test_help_lists_the_commands(runner: CliRunner, env: Env) -> None:
    result = _invoke(runner, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "migrate", "users", "keys"):
        assert command in result.output
    users = _invoke(runner, ["users", "--help"])
    assert users.exit_code == 0
    assert "create-admin" in users.output
    keys = _invoke(runner, ["keys", "--help"])
    assert "generate" in keys.output
    assert "rotate" in keys.output


def test_keys_generate_prints_a_private_jwk_set(runner: CliRunner, env: Env) -> None:
    result = _invoke(runner, ["keys", "generate"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert list(printed) == ["keys"]
    (key,) = printed["keys"]
    assert key["kty"] == "OKP"
    assert key["crv"] == "Ed25519"
    assert key["kid"]
    assert key["d"]  # private: this is what TIDINGS_SIGNING_KEYS needs
    again = json.loads(_invoke(runner, ["keys", "generate"]).stdout)
    assert again["keys"][0]["kid"] != key["kid"]
    assert not env.data_dir.exists()  # generating writes nothing


def test_keys_rotate(runner: CliRunner, env: Env) -> None:
    first = _invoke(runner, ["keys", "rotate"])
    assert first.exit_code == 0, first.output
    second = _invoke(runner, ["keys", "rotate", "--keep", "2"])
    assert second.exit_code == 0, second.output
    kids = [k["kid"] for k in json.loads((env.data_dir / "signing-keys.json").read_text())["keys"]]
    assert len(kids) == 2
    assert kids[0] in _text(second)
    assert kids[1] in _text(first)
    assert _invoke(runner, ["keys", "rotate", "--keep", "1"]).exit_code == 2


# --- migrate -----------------------------------------------------------------------------------


def test_migrate_then_check(runner: CliRunner, env: Env) -> None:
    result = _invoke(runner, ["migrate"])
    assert result.exit_code == 0, result.output
    assert env.db_path.is_file()  # the directory was created on demand
    assert "Migrated" in result.output
    with sqlite3.connect(env.db_path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"users", "auth_sessions", "refresh_tokens", "alembic_version"} <= tables

    checked = _invoke(runner, ["migrate", "--check"])
    assert checked.exit_code == 0, checked.output
    assert "agree" in _text(checked)


def test_a_failed_migration_says_why_in_one_line_and_shows_no_password(
    runner: CliRunner, env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    # nothing listens on port 1 of loopback
    url = "postgresql+asyncpg://postgres:not-to-be-shown@127.0.0.1:1/tidings"
    monkeypatch.setenv("TIDINGS_DATABASE_URL", url)
    get_settings.cache_clear()
    result = _invoke(runner, ["migrate"])
    assert result.exit_code == 1
    assert "Migration failed on postgresql+asyncpg://postgres:***@127.0.0.1:1/tidings" in _text(
        result
    )
    assert "not-to-be-shown" not in result.output
    assert "Traceback" not in result.output


def test_two_migrations_started_together_on_one_sqlite_file_both_succeed(tmp_path: Path) -> None:
    """Two `tidings migrate` (two servers started at once) take turns on the file's lock;
    without it both created the first table and one failed (3 times out of 3)."""
    url = f"sqlite+aiosqlite:///{tmp_path}/data/together.db"
    environ = {**os.environ, "TIDINGS_DATABASE_URL": url, "TIDINGS_DATA_DIR": str(tmp_path)}
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "tidings", "migrate"],
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=120)[0].decode() for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    with sqlite3.connect(tmp_path / "data" / "together.db") as conn:
        [(revision,)] = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    assert revision == ScriptDirectory.from_config(alembic_config(url)).get_current_head()


# --- users create-admin ------------------------------------------------------------------------


def test_create_admin_with_password_option(runner: CliRunner, env: Env) -> None:
    _migrate(runner)
    result = _invoke(
        runner,
        [
            "users",
            "create-admin",
            "--username",
            "boss",
            "--email",
            "Boss@Example.com",
            "--password",
            PASSWORD,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Created admin" in result.output
    email, role, verified, password_hash = _users(env.db_path)["boss"]
    assert email == "boss@example.com"
    assert role == "admin"
    assert verified == 1
    assert password_hash is not None
    assert password_hash.startswith("$argon2id$")
    assert PASSWORD not in password_hash
    # the command leased a node id for its writes, and gave it back
    with sqlite3.connect(env.db_path) as conn:
        (user_id,) = conn.execute("SELECT id FROM users WHERE username_key = 'boss'").fetchone()
        used = conn.execute(
            "SELECT node_id, holder FROM id_nodes WHERE leased_until > '2000-01-01'"
        ).fetchall()
    assert len(used) == 1
    node_id, holder = used[0]
    assert holder is None
    assert (user_id >> SEQUENCE_BITS) & MAX_NODE == node_id


def test_users_delete_closes_and_erases_an_account(runner: CliRunner, env: Env) -> None:
    _migrate(runner)
    args = ["users", "create-admin", "--username", "boss", "--email", "b@example.com"]
    assert _invoke(runner, [*args, "--password", PASSWORD]).exit_code == 0
    with sqlite3.connect(env.db_path) as conn:
        [(user_id,)] = conn.execute("SELECT id FROM users WHERE username_key = 'boss'").fetchall()
    result = _invoke(runner, ["users", "delete", "boss", "--erase-now"])
    assert result.exit_code == 0, result.output
    assert "Deleted boss and erased" in result.output
    users = _users(env.db_path)
    assert "boss" not in users
    email, role, _verified, password_hash = users[f"~{user_id}"]
    assert email == f"{user_id}@erased.invalid"
    assert role == "user"  # a deleted admin holds no role
    assert password_hash is None
    missing = _invoke(runner, ["users", "delete", "boss"])
    assert missing.exit_code == 1
    assert "No user named 'boss'" in missing.output


@pytest.mark.parametrize("redis_up", [True, False], ids=["redis", "redis-down"])
def test_users_delete_says_when_the_shared_cache_kept_the_account(
    runner: CliRunner, env: Env, monkeypatch: pytest.MonkeyPatch, redis_up: bool
) -> None:
    """With a Redis row cache the command evicts what servers cache of the account; with
    Redis down it retries a few seconds, then says the entries may be served until their TTL
    (this process exits: no later read would send them)."""
    _migrate(runner)
    args = ["users", "create-admin", "--username", "boss", "--email", "b@example.com"]
    assert _invoke(runner, [*args, "--password", PASSWORD]).exit_code == 0
    monkeypatch.setenv("TIDINGS_ROW_CACHE", "redis")
    monkeypatch.setenv("TIDINGS_CACHE_KEY_PREFIX", f"cli-{secrets.token_hex(4)}:")
    # port 9 (discard): nothing listens on loopback, the connection is refused at once
    url = "redis://127.0.0.1:6379/0" if redis_up else "redis://127.0.0.1:9/0"
    monkeypatch.setenv("TIDINGS_REDIS_URL", url)
    get_settings.cache_clear()
    result = _invoke(runner, ["users", "delete", "boss"])
    assert result.exit_code == 0, result.output
    assert "Deleted boss" in _text(result)
    assert ("not evicted" in _text(result)) is not redis_up, _text(result)
    assert _users(env.db_path)["boss"][0].endswith("@erased.invalid")  # closed at once


def test_users_delete_refuses_beside_a_server_with_the_memory_cache(
    runner: CliRunner, env: Env
) -> None:
    _migrate(runner)
    args = ["users", "create-admin", "--username", "boss", "--email", "b@example.com"]
    assert _invoke(runner, [*args, "--password", PASSWORD]).exit_code == 0
    server = ServerLock.for_database(env.database_url, exclusive=True)  # as `tidings serve`
    assert server is not None
    server.acquire()
    try:
        result = _invoke(runner, ["users", "delete", "boss"])
    finally:
        server.release()
    assert result.exit_code == 1
    assert "in-memory row cache" in _text(result)
    assert "boss" in _users(env.db_path)  # nothing changed


def test_create_admin_prompts_for_the_password(runner: CliRunner, env: Env) -> None:
    _migrate(runner)
    result = _invoke(
        runner,
        ["users", "create-admin", "--username", "boss", "--email", "boss@example.com"],
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert result.exit_code == 0, result.output
    assert "Password" in result.output
    assert PASSWORD not in result.output  # hidden input is not echoed
    assert _users(env.db_path)["boss"][1] == "admin"


def test_create_admin_prompt_confirmation_must_match(runner: CliRunner, env: Env) -> None:
    _migrate(runner)
    result = _invoke(
        runner,
        ["users", "create-admin", "--username", "boss", "--email", "boss@example.com"],
        input=f"{PASSWORD}\nsomething-else\n",
    )
    assert result.exit_code != 0
    assert "boss" not in _users(env.db_path)


def test_create_admin_refuses_a_short_password(runner: CliRunner, env: Env) -> None:
    _migrate(runner)
    result = _invoke(
        runner,
        [
            "users",
            "create-admin",
            "--username",
            "boss",
            "--email",
            "boss@example.com",
            "--password",
            "short",
        ],
    )
    assert result.exit_code == 2
    assert "password" in _text(result)
    assert "8 characters" in _text(result)
    assert _users(env.db_path) == {}


def test_create_admin_refuses_a_bad_username_and_email(runner: CliRunner, env: Env) -> None:
    _migrate(runner)
    result = _invoke(
        runner,
        [*ADMIN, "--username", "no spaces", "--email", "nope", "--password", PASSWORD],
    )
    assert result.exit_code == 2
    assert "username" in _text(result)
    assert "email" in _text(result)
    assert _users(env.db_path) == {}


def test_create_admin_twice_is_a_conflict(runner: CliRunner, env: Env) -> None:
    _migrate(runner)
    args = ["users", "create-admin", "--username", "boss", "--email", "boss@example.com"]
    assert _invoke(runner, [*args, "--password", PASSWORD]).exit_code == 0
    again = _invoke(
        runner,
        [*ADMIN, "--username", "BOSS", "--email", "other@example.com", "--password", PASSWORD],
    )
    assert again.exit_code == 1
    assert "already registered" in _text(again)
    assert list(_users(env.db_path)) == ["boss"]


def test_create_admin_without_password_under_ci_fails_fast(
    runner: CliRunner, env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    result = _invoke(
        runner,
        ["users", "create-admin", "--username", "boss", "--email", "boss@example.com"],
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert result.exit_code == 2
    assert "--password is required" in _text(result)


# --- serve -------------------------------------------------------------------------------------


def test_serve_refuses_production_without_a_secret(
    runner: CliRunner, env: Env, monkeypatch: pytest.MonkeyPatch, no_server: list[dict[str, Any]]
) -> None:
    monkeypatch.setenv("TIDINGS_ENV", "production")
    result = _invoke(runner, ["serve"])
    assert result.exit_code == 2
    assert "Refusing to start" in _text(result)
    assert "TIDINGS_SECRET_KEY" in _text(result)
    assert no_server == []
    assert not env.db_path.exists()  # failed before migrating
    assert not (env.data_dir / "secret.key").exists()


@pytest.mark.parametrize(
    ("secret", "expected"),
    [("changeme", "at least 32"), (GOOD_SECRET, "TIDINGS_SIGNING_KEYS")],
)
def test_serve_refuses_production_with_bad_secrets(
    runner: CliRunner,
    env: Env,
    monkeypatch: pytest.MonkeyPatch,
    no_server: list[dict[str, Any]],
    secret: str,
    expected: str,
) -> None:
    monkeypatch.setenv("TIDINGS_ENV", "production")
    monkeypatch.setenv("TIDINGS_SECRET_KEY", secret)
    result = _invoke(runner, ["serve"])
    assert result.exit_code == 2
    assert "Refusing to start" in _text(result)
    assert expected in _text(result)
    assert no_server == []


def test_invalid_configuration_exits_2(
    runner: CliRunner, env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIDINGS_ENV", "staging")
    result = _invoke(runner, ["migrate"])
    assert result.exit_code == 2
    assert "Invalid configuration" in _text(result)


def test_serve_in_development_migrates_then_starts_uvicorn(
    runner: CliRunner, env: Env, no_server: list[dict[str, Any]]
) -> None:
    result = _invoke(runner, ["serve", "--host", "127.0.0.2", "--port", "8123"])
    assert result.exit_code == 0, result.output
    assert env.db_path.is_file()  # auto-migrated in development
    assert (env.data_dir / "secret.key").is_file()
    assert (env.data_dir / "signing-keys.json").is_file()
    assert len(no_server) == 1
    call = no_server[0]
    assert call["target"] == "tidings.app:create_app"
    assert call["factory"] is True
    assert (call["host"], call["port"], call["workers"]) == ("127.0.0.2", 8123, 1)
    assert call["server_header"] is False


def test_serve_keeps_the_in_memory_row_cache_to_one_process(
    runner: CliRunner, env: Env, monkeypatch: pytest.MonkeyPatch, no_server: list[dict[str, Any]]
) -> None:
    """Its evictions reach only the process that wrote: an explicit ``memory`` with several
    workers is refused; ``auto`` (the embedded default) is turned off for the workers."""
    monkeypatch.setenv("TIDINGS_ROW_CACHE", "memory")
    refused = _invoke(runner, ["serve", "--workers", "2"])
    assert refused.exit_code == 2
    assert "TIDINGS_ROW_CACHE=memory needs one process" in _text(refused)
    assert no_server == []

    assert _invoke(runner, ["serve"]).exit_code == 0  # one process: fine
    assert os.environ["TIDINGS_ROW_CACHE"] == "memory"

    monkeypatch.setenv("TIDINGS_ROW_CACHE", "auto")
    # and `serve --workers N` points PROMETHEUS_MULTIPROC_DIR at a directory of its own
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    get_settings.cache_clear()
    started = _invoke(runner, ["serve", "--workers", "2"])
    assert started.exit_code == 0, started.output
    assert "Row cache off" in _text(started)
    assert os.environ["TIDINGS_ROW_CACHE"] == "none"  # what the workers will read
    assert [call["workers"] for call in no_server] == [1, 2]


def test_serve_in_production_with_real_secrets_does_not_migrate(
    runner: CliRunner,
    env: Env,
    monkeypatch: pytest.MonkeyPatch,
    no_server: list[dict[str, Any]],
) -> None:
    keys = _invoke(runner, ["keys", "generate"]).stdout
    monkeypatch.setenv("TIDINGS_ENV", "production")
    monkeypatch.setenv("TIDINGS_SECRET_KEY", GOOD_SECRET)
    monkeypatch.setenv("TIDINGS_SIGNING_KEYS", keys)
    result = _invoke(runner, ["serve", "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert not env.db_path.exists()  # TIDINGS_AUTO_MIGRATE defaults to false in production
    assert not env.data_dir.exists()  # and nothing is generated
    assert len(no_server) == 1
    assert no_server[0]["workers"] == 2


def test_serve_refuses_one_node_id_for_several_workers(
    runner: CliRunner, env: Env, monkeypatch: pytest.MonkeyPatch, no_server: list[dict[str, Any]]
) -> None:
    """TIDINGS_NODE_ID names one process: the workers of ``serve --workers N`` would share it
    and make colliding ids, so that is refused; one process may use it."""
    monkeypatch.setenv("TIDINGS_NODE_ID", "7")
    get_settings.cache_clear()
    refused = _invoke(runner, ["serve", "--workers", "2"])
    assert refused.exit_code == 2
    assert "TIDINGS_NODE_ID names one process" in _text(refused)
    assert no_server == []
    assert _invoke(runner, ["serve"]).exit_code == 0
    assert [call["workers"] for call in no_server] == [1]


def test_a_worker_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    """It leases its node id there: without the table it says what to do and exits 2."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env |= {
        "TIDINGS_DATA_DIR": str(tmp_path / "data"),
        "TIDINGS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'blank.db'}",
        "TIDINGS_BROKER": "redis",
        "TIDINGS_BROKER_URL": "redis://127.0.0.1:6379/13",
        "TIDINGS_ROW_CACHE": "none",
        "TIDINGS_LOG_LEVEL": "WARNING",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    done = subprocess.run(
        [sys.executable, "-m", "tidings", "worker"], env=env, capture_output=True, timeout=120
    )
    out = " ".join((done.stdout + done.stderr).decode(errors="replace").split())
    assert done.returncode == 2, out
    assert "run `tidings migrate` first" in out
