"""One server per embedded database while the in-memory row cache serves it.

The in-memory row cache (``TIDINGS_ROW_CACHE=memory``, the embedded default) is evicted by the
writes of its own process only. A second API process or worker on the same SQLite file would
write behind its back: a session revoked there would still be accepted here until the cached
entry expires. So every serving process (API or worker) takes an advisory lock on a file next
to the database: shared when it keeps no rows in memory, exclusive when it does. A second
process that would break the rule is refused at start with a clear message. One-shot commands
(``tidings users create-admin``, ``tidings migrate``) take no such lock: they only add rows
nobody has cached, and they must work beside a running server (migrations take turns on a lock
of their own, :func:`tidings.core.migrate.upgrade`).

PostgreSQL needs no lock here: ``memory`` on PostgreSQL is an explicit choice, and
``auto`` never picks it there.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from sqlalchemy.engine import make_url

from tidings.core.errors import ConfigurationError
from tidings.settings import Settings

LOCK_SUFFIX = ".servers.lock"


def lock_path(database_url: str, suffix: str = LOCK_SUFFIX) -> Path | None:
    """A lock file next to a SQLite database file; None for other databases and in-memory
    ones."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        return None
    if url.query.get("mode") == "memory":
        return None
    return Path(database).with_name(Path(database).name + suffix)


class ServerLock:
    """An advisory ``flock`` held for the life of a serving process (released on exit)."""

    def __init__(self, path: Path, *, exclusive: bool) -> None:
        self.path = path
        self.exclusive = exclusive
        self._fd: int | None = None

    @classmethod
    def for_database(cls, database_url: str, *, exclusive: bool) -> ServerLock | None:
        path = lock_path(database_url)
        return cls(path, exclusive=exclusive) if path is not None else None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        mode = fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            database = self.path.name.removesuffix(LOCK_SUFFIX)
            if self.exclusive:
                why = "another Tidings process already serves it"
            else:
                why = "a Tidings process with the in-memory row cache serves it"
            raise ConfigurationError(
                f"{why} ({database}). The in-memory row cache (TIDINGS_ROW_CACHE=memory, the "
                "embedded default) needs to be the database's only server: its evictions reach "
                "its own process only. Stop the other process, or set TIDINGS_ROW_CACHE=none "
                "(or redis) on every process that serves this database."
            ) from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def hold_server_lock(settings: Settings) -> ServerLock | None:
    """Take this serving process's lock on its database (None where none is needed)."""
    exclusive = settings.effective_row_cache == "memory"
    lock = ServerLock.for_database(settings.effective_database_url, exclusive=exclusive)
    if lock is not None:
        lock.acquire()
    return lock
