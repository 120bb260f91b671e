"""The ``tidings`` command line."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from tidings.audit.service import ChainReport
from tidings.bench.cli import bench_app
from tidings.core.errors import AppError, ConfigurationError
from tidings.settings import Settings, get_settings

app = typer.Typer(
    help="Tidings: a self-hostable backend for social sharing.",
    no_args_is_help=True,
    add_completion=False,
)
users_app = typer.Typer(help="Manage accounts.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage token-signing keys.", no_args_is_help=True)
audit_app = typer.Typer(help="Inspect the audit trail.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(bench_app, name="bench")
console = Console(stderr=True)


def _settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as exc:
        console.print(f"[red]Invalid configuration:[/red]\n{exc}")
        raise typer.Exit(2) from exc


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    ssl_certfile: Annotated[str | None, typer.Option(help="TLS certificate (PEM).")] = None,
    ssl_keyfile: Annotated[str | None, typer.Option(help="TLS private key (PEM).")] = None,
) -> None:
    """Serve the HTTP API with uvicorn (migrates first when TIDINGS_AUTO_MIGRATE allows)."""
    import uvicorn

    from tidings.core.keys import load_key_material
    from tidings.core.writers import ServerLock

    settings = _settings()
    try:
        load_key_material(settings)  # fail fast on missing secrets, before forking workers
        from tidings.core.tracing import check_ready

        check_ready(settings)  # the otel extra and an endpoint, when tracing
    except ConfigurationError as exc:
        console.print(f"[red]Refusing to start:[/red] {exc}")
        raise typer.Exit(2) from exc
    if workers > 1 and settings.node_id is not None:
        console.print(
            "[red]Refusing to start:[/red] TIDINGS_NODE_ID names one process, and the "
            f"{workers} workers would share it (their generated ids would collide); leave it "
            "unset: each process leases a node id of its own."
        )
        raise typer.Exit(2)
    if workers > 1 and settings.effective_row_cache == "memory":
        # each process would keep its own rows, and evictions reach only the process that wrote
        if settings.row_cache == "memory":
            console.print(
                "[red]Refusing to start:[/red] TIDINGS_ROW_CACHE=memory needs one process; "
                "with --workers > 1 use redis (shared) or none."
            )
            raise typer.Exit(2)
        os.environ["TIDINGS_ROW_CACHE"] = "none"  # the workers read their settings afresh
        console.print("Row cache off: the in-memory one serves a single process (--workers 1).")
    # a clean refusal here rather than a failed lifespan; each process's lifespan then holds it
    probe = ServerLock.for_database(
        settings.effective_database_url,
        exclusive=workers == 1 and settings.effective_row_cache == "memory",
    )
    if probe is not None:
        try:
            probe.acquire()
        except ConfigurationError as exc:
            console.print(f"[red]Refusing to start:[/red] {exc}")
            raise typer.Exit(2) from exc
        probe.release()
    if settings.should_auto_migrate:
        _upgrade_or_exit(settings.effective_database_url, "head")
    console.print(
        f"Tidings on http://{host}:{port} — database {_shown(settings.effective_database_url)}"
    )
    shared_metrics = _metrics_dir(workers) if settings.metrics_enabled else None
    try:
        uvicorn.run(
            "tidings.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
            proxy_headers=False,
            server_header=False,
            log_config=None,
        )
    finally:
        if shared_metrics is not None:
            shutil.rmtree(shared_metrics, ignore_errors=True)


def _metrics_dir(workers: int) -> str | None:
    """With several worker processes each keeps its counters in files of a directory they
    share, and a scrape of any of them adds all up (prometheus-client's multiprocess mode):
    a fresh one per start, removed at exit. One given in PROMETHEUS_MULTIPROC_DIR is used,
    emptied of earlier runs' files first."""
    from tidings.core.metrics import MULTIPROC_ENV

    given = os.environ.get(MULTIPROC_ENV)
    if given is not None and not given.strip():
        del os.environ[MULTIPROC_ENV]  # set but empty: prometheus-client would write to "."
        given = None
    if given:
        # the files of earlier runs' processes would be added up forever: start from none
        for stale in Path(given).glob("*.db"):
            stale.unlink(missing_ok=True)
        return None
    if workers == 1:
        return None
    path = tempfile.mkdtemp(prefix="tidings-metrics-")
    os.environ[MULTIPROC_ENV] = path  # the workers start after this and read it at import
    return path


@app.command()
def worker() -> None:
    """Run the outbox relay and the event consumers (production brokers: redis, rabbitmq, nats).

    SIGTERM or Ctrl-C stops taking work and lets jobs in hand finish within
    TIDINGS_WORKER_GRACE_SECONDS; unfinished jobs are not acknowledged and are delivered again.
    """
    settings = _settings()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # its counters would land in the API's files and be counted there and here
        console.print(
            "[red]Refusing to start:[/red] PROMETHEUS_MULTIPROC_DIR is for `tidings serve`'s "
            "processes; unset it for the worker (it serves its own metrics on "
            "TIDINGS_WORKER_METRICS_PORT)."
        )
        raise typer.Exit(2)
    try:
        started = asyncio.run(_run_worker(settings))
    except ConfigurationError as exc:
        console.print(f"[red]Refusing to start:[/red] {exc}")
        raise typer.Exit(2) from exc
    if not started:
        console.print(
            f"[red]The {settings.broker} broker did not start within "
            f"TIDINGS_BROKER_STARTUP_SECONDS ({settings.broker_startup_seconds:g} s)[/red]: "
            "see broker_startup_failed in the log."
        )
        raise typer.Exit(1)


async def _run_worker(settings: Settings) -> bool:
    """Run until SIGTERM/SIGINT (True) or until the broker's startup is given up (False)."""
    import signal

    from tidings.core.container import Container
    from tidings.core.logging import configure_logging
    from tidings.core.writers import hold_server_lock

    configure_logging(settings.log_level, settings.effective_log_format)
    if settings.metrics_enabled and settings.worker_metrics_port is not None:
        from prometheus_client import start_http_server

        from tidings.core.metrics import metrics

        metrics()  # declared before the first scrape
        try:
            start_http_server(settings.worker_metrics_port, addr=settings.worker_metrics_host)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot serve metrics on {settings.worker_metrics_host}:"
                f"{settings.worker_metrics_port} (TIDINGS_WORKER_METRICS_PORT): {exc}"
            ) from exc
    from tidings.core.tracing import configure, instrument

    end_tracing = configure(settings, export=True)
    lock = hold_server_lock(settings)  # before any write (SQLite only: see core.writers)
    container = Container.build(settings)
    instrument(settings, container.db.engine)
    lease = None
    if settings.node_id is None:  # one node id per process for generated ids
        from tidings.core.nodes import NodeLease

        lease = NodeLease(container.db)
        await lease.start()
    else:
        from tidings.core.ids import configure_ids

        configure_ids(settings.node_id)
    events = container.build_events()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await events.start(relay=True, consume=True, give_up=True)
    except BaseException:
        if lease is not None:
            await lease.stop()
        raise
    if settings.gc_tuning:
        from tidings.core.collector import tune_collector

        tune_collector()
    if events.broker_up:
        console.print(f"Tidings worker: broker {settings.broker}, relay and consumers running")
    else:
        console.print(
            f"Tidings worker: waiting for the {settings.broker} broker "
            f"(at most {settings.broker_startup_seconds:g} s)"
        )
    try:
        waits = [asyncio.create_task(stop.wait()), asyncio.create_task(events.gave_up.wait())]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in waits:
            task.cancel()
        return not events.gave_up.is_set()
    finally:
        await events.stop(settings.worker_grace_seconds)
        if lease is not None:
            await lease.stop()
        await container.close()
        if lock is not None:
            lock.release()
        try:  # what is still batched goes out, without holding the loop past a few seconds
            await asyncio.wait_for(asyncio.to_thread(end_tracing), 6)
        except TimeoutError:
            import structlog

            structlog.get_logger("tidings.worker").warning("trace_export_unfinished")
        await _end_stragglers()


async def _end_stragglers() -> None:
    """Tasks still running once the worker has stopped would hold ``asyncio.run``'s exit for
    ever (it waits for every task it cancels). They are cancelled; if some outlive that by
    ``STOP_SECONDS`` the process leaves at once (exit status 1): what they held was never
    acknowledged, so it is delivered again."""
    import structlog

    from tidings.events.runtime import STOP_SECONDS, cancel_within

    current = asyncio.current_task()
    left = [task for task in asyncio.all_tasks() if task is not current and not task.done()]
    stuck = await cancel_within(left, STOP_SECONDS)
    if stuck:
        structlog.get_logger("tidings.worker").warning("worker_exit_forced", tasks=len(stuck))
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)


def _upgrade_or_exit(url: str, revision: str) -> None:
    """Migrate, or say why not in one line and exit 1 (no traceback, no password)."""
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from tidings.core import migrate as migrations

    try:
        migrations.upgrade(url, revision)
    except (SQLAlchemyError, OSError, CommandError) as exc:
        console.print(f"[red]Migration failed[/red] on {_shown(url)}: {type(exc).__name__}: {exc}")
        raise typer.Exit(1) from exc


def _shown(url: str) -> str:
    """A database URL fit for a terminal or a log: the password masked."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@app.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    check: Annotated[
        bool, typer.Option("--check", help="Then fail if the models and migrations disagree.")
    ] = False,
) -> None:
    """Apply database migrations (Alembic) up to REVISION."""
    from alembic.util.exc import AutogenerateDiffsDetected

    from tidings.core import migrate as migrations

    settings = _settings()
    url = settings.effective_database_url
    _upgrade_or_exit(url, revision)
    console.print(f"[green]Migrated[/green] {_shown(url)} to {revision}")
    if check:
        try:
            migrations.check(url)
        except AutogenerateDiffsDetected as exc:
            console.print(f"[red]Models and migrations disagree:[/red] {exc}")
            raise typer.Exit(1) from exc
        console.print("[green]Models and migrations agree.[/green]")


@users_app.command("create-admin")
def create_admin(
    username: Annotated[str, typer.Option(help="Username (3-30 letters, digits, _).")],
    email: Annotated[str, typer.Option(help="Email address.")],
    password: Annotated[
        str | None, typer.Option(help="Password; prompted for (hidden) when omitted.")
    ] = None,
) -> None:
    """Create an administrator account."""
    from tidings.accounts.schemas import RegisterRequest

    if password is None:
        if not sys.stdin.isatty() and os.environ.get("CI"):
            console.print("[red]--password is required without a terminal[/red]")
            raise typer.Exit(2)
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        cmd = RegisterRequest(username=username, email=email, password=password)
    except ValidationError as exc:
        for err in exc.errors():
            console.print(f"[red]{'.'.join(map(str, err['loc']))}: {err['msg']}[/red]")
        raise typer.Exit(2) from exc
    try:
        user_id = asyncio.run(_create_admin(_settings(), cmd))
    except AppError as exc:
        console.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(1) from exc
    console.print(f"[green]Created admin[/green] {username} (id {user_id})")
    if _settings().staff_mfa == "required":
        console.print(
            "Its admin powers start once it turns on two-step sign-in "
            "(POST /api/v1/me/mfa/totp, then /api/v1/me/mfa/totp/confirm; docs/auth.md)."
        )


async def _create_admin(settings: Settings, cmd: object) -> int:
    from tidings.accounts.schemas import RegisterRequest
    from tidings.accounts.service import create_admin as create
    from tidings.core.db import Database
    from tidings.core.security import PasswordHasher

    assert isinstance(cmd, RegisterRequest)
    from tidings.core.nodes import leased_ids

    db = Database(settings.effective_database_url, pool_size=1)
    try:
        async with (
            leased_ids(db, settings.node_id),
            db.unit_of_work(write=True) as session,
        ):
            user = await create(session, PasswordHasher.from_settings(settings), cmd)
            return user.id
    finally:
        await db.dispose()


@users_app.command("delete")
def delete_user(
    username: Annotated[str, typer.Argument(help="The account to delete.")],
    erase_now: Annotated[
        bool,
        typer.Option("--erase-now", help="Erase its content here and now, not in the background."),
    ] = False,
) -> None:
    """Delete an account (an erasure request that reached you by mail, say): closed at once,
    its content erased by the background loop, or here with --erase-now (docs/accounts.md)."""
    from tidings.core.writers import ServerLock

    settings = _settings()
    # a server's in-memory row cache would keep serving the account's cached sign-in state:
    # refuse beside one (servers without it hold the lock shared, as this does); a shared
    # Redis row cache is evicted from here
    lock = ServerLock.for_database(settings.effective_database_url, exclusive=False)
    try:
        if lock is not None:
            lock.acquire()
        elif settings.effective_row_cache == "memory":  # a server's own cache, not on SQLite
            raise ConfigurationError("TIDINGS_ROW_CACHE=memory")
        erased, unsent = asyncio.run(_delete_user(settings, username, erase_now))
    except ConfigurationError as exc:
        console.print(
            "[red]A server with the in-memory row cache serves this database: delete through "
            "the API (DELETE /api/v1/admin/users/USERNAME), or stop the server first.[/red]"
        )
        raise typer.Exit(1) from exc
    except AppError as exc:
        console.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(1) from exc
    finally:
        if lock is not None:
            lock.release()
    state = "and erased" if erased else "; its content is erased in the background"
    console.print(f"[green]Deleted[/green] {username} {state}")
    if unsent:
        console.print(
            f"[yellow]Redis could not be reached: {unsent} cached entries of the account were "
            f"not evicted; servers may serve them (its sign-in state too) for up to "
            f"{settings.cache_ttl_seconds} s.[/yellow]"
        )


async def _delete_user(settings: Settings, username: str, erase_now: bool) -> tuple[bool, int]:
    """Whether the content was erased here, and how many of the account's cache entries Redis
    did not take (an outage: they expire with their TTL)."""
    from tidings.accounts.erasure import erase_account
    from tidings.accounts.models import User
    from tidings.accounts.service import operator_delete
    from tidings.core.db import Database

    db = Database(settings.effective_database_url, pool_size=1)
    redis = None
    if settings.effective_row_cache == "redis":  # evict what the servers cache of the account
        from tidings.feeds.store import connect
        from tidings.posts.cache import open_row_cache

        redis = connect(settings)
        cache = open_row_cache(settings, redis, db.sessions)
    from tidings.core.nodes import leased_ids

    try:
        async with leased_ids(db, settings.node_id):  # its writes make ids
            async with db.unit_of_work(write=True) as session:
                user_id = (await operator_delete(session, username)).id
            if erase_now:
                while not await erase_account(
                    db,
                    user_id,
                    batch=settings.erasure_batch,
                    max_batches=settings.erasure_max_batches,
                ):
                    async with db.unit_of_work(write=False) as session:
                        user = await session.get(User, user_id)
                        if user is None or user.erased_at is not None:
                            break  # a running server's loop finished it
            unsent = 0
            if redis is not None:  # this process exits: an eviction an outage kept must go now
                for _attempt in range(5):  # bounded: about four seconds
                    unsent = await cache.flush_unsent()
                    if not unsent:
                        break
                    await asyncio.sleep(1)
            return erase_now, unsent
    finally:
        if redis is not None:
            await redis.aclose(close_connection_pool=True)
        await db.dispose()


@keys_app.command("rotate")
def rotate_keys(
    keep: Annotated[int, typer.Option(min=2, help="Keys kept for verification.")] = 3,
) -> None:
    """Start signing with a new key; older ones keep verifying until dropped.

    With keys in a file (the default) the file is rewritten. With TIDINGS_SIGNING_KEYS set, the
    rotated set is printed for you to put back into that variable.
    """
    import json

    from tidings.core.keys import _parse_keyset, rotate_signing_keys, rotated_keyset

    settings = _settings()
    if settings.signing_keys is not None:
        current = _parse_keyset(settings.signing_keys.get_secret_value(), "TIDINGS_SIGNING_KEYS")
        rotated = rotated_keyset(list(current.keys), keep)
        typer.echo(json.dumps(rotated.as_dict(private=True)))
        console.print("Set TIDINGS_SIGNING_KEYS to the JSON above, then restart the API.")
        return
    kid = rotate_signing_keys(settings, keep=keep)
    console.print(f"[green]New signing key[/green] {kid}; restart the API to use it.")


@keys_app.command("generate")
def generate_keys() -> None:
    """Print a fresh private JWK set for TIDINGS_SIGNING_KEYS (production)."""
    import json

    from joserfc.jwk import KeySet

    from tidings.core.keys import new_signing_key

    typer.echo(json.dumps(KeySet([new_signing_key()]).as_dict(private=True)))


@audit_app.command("verify")
def audit_verify() -> None:
    """Re-compute the audit hash chain; exit 1 naming the first row that does not match."""
    report = asyncio.run(_verify_audit(_settings()))
    if report.ok:
        console.print(f"[green]Audit chain intact[/green]: {report.checked} events verified.")
        return
    console.print(
        f"[red]Audit chain broken at seq {report.broken_seq}[/red]: {report.reason} "
        f"({report.checked} events verified before it)."
    )
    raise typer.Exit(1)


async def _verify_audit(settings: Settings) -> ChainReport:
    from tidings.audit.service import verify_chain
    from tidings.core.db import Database

    db = Database(settings.effective_database_url, pool_size=1)
    try:
        async with db.unit_of_work(write=False) as session:
            return await verify_chain(session)
    finally:
        await db.dispose()


@app.command()
def prune(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")
    ] = False,
) -> None:
    """Delete what TIDINGS_RETENTION_* no longer keeps: one pass, as the background loop makes.

    Bounded like the loop (TIDINGS_RETENTION_BATCH rows per transaction, at most
    TIDINGS_RETENTION_MAX_BATCHES batches per table); run it again to go further.
    """
    from rich.table import Table

    settings = _settings()
    counts = asyncio.run(_prune(settings, dry_run))
    table = Table(title="Would delete (dry run)" if dry_run else "Deleted")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in counts.items():
        table.add_row(name, f"{rows:,}")
    table.add_row("total", f"{sum(counts.values()):,}", style="bold")
    Console().print(table)


async def _prune(settings: Settings, dry_run: bool) -> dict[str, int]:
    from tidings.core.db import Database
    from tidings.retention.service import preview
    from tidings.retention.service import prune as prune_once

    db = Database(settings.effective_database_url, pool_size=1)
    try:
        if dry_run:
            return await preview(db, settings)
        return await prune_once(db, settings)
    finally:
        await db.dispose()


def main() -> None:
    app()
