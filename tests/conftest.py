"""Shared fixtures: a real database per test (SQLite and PostgreSQL), the app, an HTTP client."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx2
import pytest

# Server processes tune the garbage collector at startup (freeze + high thresholds,
# tidings.core.collector); the suite starts hundreds of apps in one process, so it does not,
# except where tests/e2e/test_collector.py checks exactly that.
os.environ.setdefault("TIDINGS_GC_TUNING", "false")

from tests.support.databases import (
    PostgresTemplates,
    SqliteTemplates,
    pg_url,
    postgres_reachable,
)
from tidings.app import create_app
from tidings.core.container import Container
from tidings.settings import Settings

RELAXED_POLICIES = (
    "anonymous",
    "authenticated",
    "register",
    "login_ip",
    "login_account",
    "token_refresh",
    "password_change",
    "account_delete",
    "session_end",
    "identity_change",
    "step_up",
    "mfa_change",
    "mfa_lockout",
    "reauth_lockout",
    "account_export",
    "user_search",
    "password_reset",
    "recovery_confirm",
    "email_verification",
    "email_change",
    "post_create",
    "comment_create",
    "follow",
    "like",
    "share",
    "bookmark",
    "webhook_create",
    "report_create",
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def postgres_templates() -> Iterator[PostgresTemplates]:
    reason = postgres_reachable()
    if reason is not None:
        message = f"PostgreSQL is not reachable ({reason}); PostgreSQL tests skipped"
        if IN_CI:
            pytest.fail(message + " — under CI=true that is a failure", pytrace=False)
        pytest.skip(message)
    templates = PostgresTemplates()
    templates.create()
    yield templates
    templates.drop()


@pytest.fixture(scope="session")
def sqlite_templates(tmp_path_factory: pytest.TempPathFactory) -> SqliteTemplates:
    templates = SqliteTemplates(tmp_path_factory.mktemp("sqlite"))
    templates.create()
    return templates


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name == "postgres":
        request.applymarker(pytest.mark.postgres)
    return name


@pytest.fixture
async def database_url(backend: str, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A freshly migrated database of its own for each test."""
    if backend == "sqlite":
        yield request.getfixturevalue("sqlite_templates").clone()
        return
    templates: PostgresTemplates = request.getfixturevalue("postgres_templates")
    name = await templates.clone()
    try:
        yield pg_url(name)
    finally:
        await templates.drop_clone(name)


def make_settings(data_dir: Path, database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "env": "development",
        "data_dir": data_dir,
        "database_url": database_url,
        "log_level": "WARNING",
        "log_format": "console",
        # Cheap argon2 parameters keep the suite fast; production defaults are tested apart.
        "password_hash_time_cost": 1,
        "password_hash_memory_kib": 1024,
        "password_hash_parallelism": 1,
        "db_pool_size": 30,
        # Budgets high enough for suites that create many users from one address; the rate
        # limiting path still runs on every request. tests/e2e/test_rate_limits.py uses the
        # real defaults.
        "rate_limits": {name: "100000/hour" for name in RELAXED_POLICIES},
        # staff accounts act without two-step sign-in in most suites, which test what roles
        # may do; tests/e2e/test_staff_mfa.py runs with the default (required)
        "staff_mfa": "optional",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path / "data", database_url)


@pytest.fixture
async def container(settings: Settings) -> AsyncIterator[Container]:
    built = Container.build(settings)
    yield built
    await built.close()


@pytest.fixture
async def client(settings: Settings, container: Container) -> AsyncIterator[httpx2.AsyncClient]:
    app = create_app(settings, container)
    transport = httpx2.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx2.AsyncClient(transport=transport, base_url="http://testserver") as http,
    ):
        yield http
