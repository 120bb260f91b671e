"""``tidings bench seed``, ``run`` and ``workload`` (PostgreSQL; Redis for the feed store).

Mounted by ``tidings.cli`` as ``app.add_typer(bench_app, name="bench")``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import Progress

from tidings.bench.report import markdown, write_results
from tidings.bench.run import RunConfig, asyncpg_dsn, load_workload, run_benchmark
from tidings.bench.seed import SCALES, Scale, seed_database
from tidings.settings import Settings, get_settings

bench_app = typer.Typer(help="Generate a dataset and benchmark the API.", no_args_is_help=True)
console = Console(stderr=True)
ScaleOption = Annotated[str, typer.Option(help="small (CI, seconds) or full (1M users).")]


def _settings() -> Settings:
    try:
        settings = get_settings()
    except ValidationError as exc:
        console.print(f"[red]Invalid configuration:[/red]\n{exc}")
        raise typer.Exit(2) from exc
    if not settings.effective_database_url.startswith("postgresql"):
        console.print("[red]The benchmark needs PostgreSQL (TIDINGS_DATABASE_URL).[/red]")
        raise typer.Exit(2)
    return settings


async def build_timelines(settings: Settings, active: int) -> int:
    """Redis timelines for the users with sessions (the benchmark's active users)."""
    from sqlalchemy import text

    from tidings.core.container import Container
    from tidings.feeds.service import rebuild_timeline
    from tidings.feeds.store import store_of

    container = Container.build(settings)
    try:
        async with container.db.unit_of_work(write=False) as session:
            ids = [
                int(i)
                for i in (
                    await session.execute(
                        text("SELECT user_id FROM auth_sessions ORDER BY id LIMIT :n"),
                        {"n": active},
                    )
                ).scalars()
            ]
        with Progress(console=console) as progress:
            task = progress.add_task("redis timelines", total=len(ids))
            for user_id in ids:
                async with container.db.unit_of_work(write=False) as session:
                    store = store_of(session)
                    assert store is not None
                    await rebuild_timeline(store, session, user_id)
                progress.advance(task)
        return len(ids)
    finally:
        await container.close()


@bench_app.command("seed")
def seed(
    scale: ScaleOption = "small",
    users: Annotated[int | None, typer.Option(min=10, help="Override the user count.")] = None,
    posts: Annotated[int | None, typer.Option(min=10, help="Override the post count.")] = None,
    reset: Annotated[bool, typer.Option(help="Empty the tables first.")] = False,
) -> None:
    """Fill the (migrated) PostgreSQL database; idempotent for the same parameters."""
    from tidings.core.migrate import upgrade

    settings = _settings()
    if scale not in SCALES:
        raise typer.BadParameter(f"choose one of {', '.join(SCALES)}")
    base = SCALES[scale]
    chosen = Scale(
        users=users or base.users,
        posts=posts or base.posts,
        active=min(base.active, users or base.users),
    )
    upgrade(settings.effective_database_url)
    try:
        timings = asyncio.run(
            seed_database(asyncpg_dsn(settings.effective_database_url), chosen, reset=reset)
        )
    except RuntimeError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    if not timings:
        console.print(f"Already seeded: {chosen.marker}")
    else:
        total = sum(timings.values())
        console.print(f"[green]Seeded[/green] {chosen.marker} in {total:.1f} s")
    if settings.feed_store == "redis":
        built = asyncio.run(build_timelines(settings, chosen.active))
        console.print(f"Built {built} Redis timelines")


def _levels(value: str | None, small: bool) -> tuple[int, ...]:
    if value is None:
        return (8,) if small else (16, 64)
    try:
        levels = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError as exc:
        raise typer.BadParameter("a comma-separated list of connection counts") from exc
    if not levels or any(not 1 <= c <= 1024 for c in levels):
        raise typer.BadParameter("each connection count between 1 and 1024")
    return tuple(dict.fromkeys(levels))


@bench_app.command("run")
def run(
    scale: ScaleOption = "full",
    concurrency: Annotated[
        str | None,
        typer.Option(help="Connection counts, e.g. 16,64 (default: 8 small, 16,64 full)."),
    ] = None,
    duration: Annotated[
        float | None, typer.Option(min=0.5, max=3600, help="Seconds of the mix per level.")
    ] = None,
    baseline_duration: Annotated[
        float | None,
        typer.Option(min=0.5, max=3600, help="Seconds per baseline, endpoint alone, pgbench."),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="API server processes.")] = 2,
    generator: Annotated[
        str, typer.Option(help="wrk, python, or auto (wrk when it is on PATH).")
    ] = "auto",
    wrk_threads: Annotated[int, typer.Option(min=1, max=64, help="wrk threads.")] = 1,
    pgbench: Annotated[bool, typer.Option(help="Measure the pgbench references.")] = True,
    worker: Annotated[
        bool,
        typer.Option(
            help="Consumers in a separate `tidings worker` on the Redis broker (as in production) "
            "instead of inside the API processes."
        ),
    ] = False,
    results: Annotated[Path, typer.Option(help="Where to write JSON, Markdown and PNG.")] = Path(
        "bench/results"
    ),
    sqlite: Annotated[
        Path | None,
        typer.Option(
            help="A SQLite copy of this seed (`tidings bench to-sqlite`): also measure the "
            "embedded default on it (one process; feed and timeline alone)."
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=10**6,
            help="Seed of the request sequence (reported); default: a new one per run.",
        ),
    ] = None,
) -> None:
    """Drive the API on loopback (mix and single endpoints) beside its baselines, pgbench,
    fan-out and time-to-visible; writes the results and checks the issue's targets."""
    settings = _settings()
    if generator not in ("auto", "wrk", "python"):
        raise typer.BadParameter("--generator: wrk, python or auto")
    if sqlite is not None and not sqlite.is_file():
        raise typer.BadParameter(f"--sqlite: no such file {sqlite} (see `tidings bench to-sqlite`)")
    small = scale == "small"
    config = RunConfig(
        concurrency=_levels(concurrency, small),
        duration=duration or (5.0 if small else 30.0),
        baseline_duration=baseline_duration or min(10.0, duration or (3.0 if small else 10.0)),
        workers=workers,
        results_dir=results,
        sqlite=sqlite,
        generator=generator,
        wrk_threads=wrk_threads,
        pgbench=pgbench,
        worker=worker,
        seed=seed,
    )
    try:
        report = asyncio.run(run_benchmark(settings, config))
    except RuntimeError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    path = write_results(report, config.results_dir)
    console.print(markdown(report), markup=False, highlight=False, soft_wrap=True)
    console.print(f"Results: {path}")
    if report["errors"]:
        console.print(f"[red]{report['errors']} errors[/red] (samples above)")
        raise typer.Exit(1)


@bench_app.command("workload")
def workload(
    out: Annotated[Path, typer.Option(help="The data file to write (mix.lua reads it).")],
) -> None:
    """Write the workload file for wrk and mix.lua: fresh access tokens for the seeded sign-in
    sessions (they expire like any access token), the user count, recent public posts. For
    measuring one endpoint by hand, e.g. with bench/cpu_per_request.sh."""
    settings = _settings()
    data, _tokens = asyncio.run(load_workload(settings))
    data.write(out)
    console.print(
        f"{len(data.clients)} clients, {data.users} users, {len(data.posts)} posts: {out}"
    )


@bench_app.command("to-sqlite")
def to_sqlite(
    target: Annotated[Path, typer.Option(help="The SQLite file to create (must not exist).")],
) -> None:
    """Copy the seeded database (TIDINGS_DATABASE_URL, PostgreSQL) into a new SQLite file, to
    measure the embedded default on the same data."""
    from tidings.bench.to_sqlite import copy_to_sqlite

    settings = _settings()
    if target.exists():
        console.print(f"[red]{target} exists[/red]")
        raise typer.Exit(2)
    url = f"sqlite+aiosqlite:///{target.resolve()}"
    with Progress(console=console) as bar:
        tasks: dict[str, object] = {}

        def show(table: str, rows: int) -> None:
            if table not in tasks:
                tasks[table] = bar.add_task(table, total=None)
            bar.update(tasks[table], completed=rows)  # type: ignore[arg-type]

        copied = asyncio.run(
            copy_to_sqlite(asyncpg_dsn(settings.effective_database_url), url, show)
        )
    for table, rows in copied.items():
        console.print(f"{table}: {rows:,} rows")
    console.print(f"TIDINGS_DATABASE_URL={url}")
