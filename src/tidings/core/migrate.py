"""Run Alembic programmatically (the CLI, the test suite and `tidings serve` use this)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

from tidings.core.writers import lock_path

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = database_url
    return config


def ensure_sqlite_dir(database_url: str) -> None:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)


MIGRATE_LOCK_SUFFIX = ".migrate.lock"


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate to ``revision``. Runs on one database take turns: on PostgreSQL an advisory
    lock in the migration's transaction (migrations/env.py), on a SQLite file an exclusive
    ``flock`` on ``<database>.migrate.lock`` (SQLite runs DDL outside the migration's
    transaction, so two processes started together both created the first table and one
    failed). A run that waited finds the work done."""
    ensure_sqlite_dir(database_url)
    path = lock_path(database_url, MIGRATE_LOCK_SUFFIX)
    if path is None:
        command.upgrade(alembic_config(database_url), revision)
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits for the other run
        command.upgrade(alembic_config(database_url), revision)
    finally:
        os.close(fd)  # closing the descriptor drops the lock


def check(database_url: str) -> None:
    """Raise if the models and the migrations disagree (``alembic check``)."""
    command.check(alembic_config(database_url))
